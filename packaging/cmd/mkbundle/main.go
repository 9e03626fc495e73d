// Command mkbundle makes an OCI bundle whose root file system is Debian's
// busybox-static, for trying cocoon (and runc) without a registry:
//
//	mkbundle -runtime bin/cocoon-runtime -o out/busybox [-- cmd args...]
//
// The spec is `cocoon-runtime spec`'s (runc's template) with the command
// replaced and no terminal, so `run` works from a script.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}

func run() error {
	runtime := flag.String("runtime", "cocoon-runtime", "the runtime whose `spec` command writes config.json")
	out := flag.String("o", "", "the bundle directory to create (must not exist)")
	flag.Parse()
	if *out == "" {
		return fmt.Errorf("usage: mkbundle -runtime FILE -o DIR [-- cmd args...]")
	}
	args := flag.Args()
	if len(args) == 0 {
		args = []string{"uname", "-a"}
	}
	if err := os.Mkdir(*out, 0o755); err != nil {
		return err
	}
	if err := testutil.BusyboxRootfs(filepath.Join(*out, "rootfs")); err != nil {
		return err
	}
	if o, err := exec.Command(*runtime, "spec", "--bundle", *out).CombinedOutput(); err != nil {
		return fmt.Errorf("%s spec: %w: %s", *runtime, err, o)
	}
	path := filepath.Join(*out, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	proc, ok := spec["process"].(map[string]any)
	if !ok {
		return fmt.Errorf("%s has no process", path)
	}
	proc["terminal"] = false
	proc["args"] = args
	data, err = json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// Command dockerconfig adds cocoon to, or removes it from, the "runtimes" of
// Docker's daemon.json, keeping every other key as it is:
//
//	dockerconfig [-file /etc/docker/daemon.json] [-name cocoon] [-path /usr/local/bin/cocoon-runtime] [-arg A]... register
//	dockerconfig [-file ...] [-name cocoon] unregister
//
// Both are idempotent; the file is replaced atomically, with its mode kept.
// dockerd reads the change on restart or SIGHUP.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cocoon-containers/cocoon/internal/statedir"
)

type args []string

func (a *args) String() string     { return strings.Join(*a, " ") }
func (a *args) Set(s string) error { *a = append(*a, s); return nil }

func main() {
	file := flag.String("file", "/etc/docker/daemon.json", "Docker daemon configuration")
	name := flag.String("name", "cocoon", "runtime name (docker run --runtime NAME)")
	path := flag.String("path", "/usr/local/bin/cocoon-runtime", "the runtime binary")
	var runtimeArgs args
	flag.Var(&runtimeArgs, "arg", "an argument dockerd passes to the runtime before its command (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 || (flag.Arg(0) != "register" && flag.Arg(0) != "unregister") {
		fmt.Fprintln(os.Stderr, "usage: dockerconfig [flags] register|unregister")
		os.Exit(2)
	}
	if err := run(*file, *name, *path, runtimeArgs, flag.Arg(0) == "register"); err != nil {
		fmt.Fprintln(os.Stderr, "dockerconfig:", err)
		os.Exit(1)
	}
}

func run(file, name, path string, runtimeArgs []string, register bool) error {
	cfg := map[string]json.RawMessage{}
	mode := fs.FileMode(0o644)
	data, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !register {
			return nil
		}
	case err != nil:
		return err
	default:
		if st, err := os.Stat(file); err == nil {
			mode = st.Mode().Perm()
		}
		if len(bytes.TrimSpace(data)) > 0 {
			if err := json.Unmarshal(data, &cfg); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
	}
	runtimes := map[string]json.RawMessage{}
	if raw, ok := cfg["runtimes"]; ok {
		if err := json.Unmarshal(raw, &runtimes); err != nil {
			return fmt.Errorf("%s: runtimes: %w", file, err)
		}
	}
	if register {
		entry := map[string]any{"path": path}
		if len(runtimeArgs) > 0 {
			entry["runtimeArgs"] = runtimeArgs
		}
		raw, _ := json.Marshal(entry)
		runtimes[name] = raw
	} else {
		if _, ok := runtimes[name]; !ok {
			return nil
		}
		delete(runtimes, name)
	}
	if len(runtimes) == 0 {
		delete(cfg, "runtimes")
	} else {
		raw, _ := json.Marshal(runtimes)
		cfg["runtimes"] = raw
	}
	out, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	out = append(out, '\n')
	if bytes.Equal(out, data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return statedir.WriteFile(file, out, mode)
}

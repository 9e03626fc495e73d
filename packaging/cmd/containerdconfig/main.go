// Command containerdconfig adds cocoon to, or removes it from, the runtime
// handlers of containerd's CRI plugin in config.toml, keeping every other
// line of the file as it is (comments included):
//
//	containerdconfig [-file /etc/containerd/config.toml] [-name cocoon] [-type io.containerd.cocoon.v2] register
//	containerdconfig [-file ...] [-name cocoon] unregister
//
// The handler is one marked block appended to the file, in the table
// syntax of the file's config version (1, 2 or 3); register replaces the
// block, unregister removes it, so both are idempotent. The result must
// decode as TOML with the handler in place, else the file is not touched
// (for example when the file already defines the handler itself). The file
// is replaced atomically, with its mode kept. containerd reads it when it
// (re)starts.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/cocoon-containers/cocoon/internal/statedir"
)

func main() {
	file := flag.String("file", "/etc/containerd/config.toml", "containerd's configuration")
	name := flag.String("name", "cocoon", "runtime handler name (RuntimeClass handler, crictl runp --runtime NAME)")
	typ := flag.String("type", "io.containerd.cocoon.v2", "runtime_type: the shim v2 (containerd-shim-cocoon-v2 in $PATH)")
	flag.Parse()
	if flag.NArg() != 1 || (flag.Arg(0) != "register" && flag.Arg(0) != "unregister") {
		fmt.Fprintln(os.Stderr, "usage: containerdconfig [flags] register|unregister")
		os.Exit(2)
	}
	if err := run(*file, *name, *typ, flag.Arg(0) == "register"); err != nil {
		fmt.Fprintln(os.Stderr, "containerdconfig:", err)
		os.Exit(1)
	}
}

func markers(name string) (begin, end string) {
	return "# BEGIN cocoon runtime " + name + " (packaging/containerd/register.sh)", "# END cocoon runtime " + name
}

// runtimesTable is the table that holds CRI runtime handlers in each
// config version.
func runtimesTable(version int64) (string, []string, error) {
	switch version {
	case 1:
		return `plugins.cri.containerd.runtimes`, []string{"plugins", "cri", "containerd", "runtimes"}, nil
	case 2:
		return `plugins."io.containerd.grpc.v1.cri".containerd.runtimes`, []string{"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"}, nil
	case 3:
		return `plugins."io.containerd.cri.v1.runtime".containerd.runtimes`, []string{"plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes"}, nil
	}
	return "", nil, fmt.Errorf("unsupported config version %d", version)
}

// removeBlock returns text without the marked block of name.
func removeBlock(text, name string) (string, bool, error) {
	begin, end := markers(name)
	i := strings.Index(text, begin)
	if i < 0 {
		return text, false, nil
	}
	j := strings.Index(text[i:], end)
	if j < 0 {
		return "", false, fmt.Errorf("%q without %q", begin, end)
	}
	j += i + len(end)
	if j < len(text) && text[j] == '\n' {
		j++
	}
	// Drop the blank line that register put before the block.
	if i >= 2 && text[i-1] == '\n' && text[i-2] == '\n' {
		i--
	}
	return text[:i] + text[j:], true, nil
}

func run(file, name, typ string, register bool) error {
	if name == "" || strings.ContainsAny(name, "\"\\\n.") {
		return fmt.Errorf("bad handler name %q", name)
	}
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
	}
	text, _, err := removeBlock(string(data), name)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var cfg map[string]any
	if _, err := toml.Decode(text, &cfg); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	version := int64(1)
	switch v := cfg["version"].(type) {
	case int64:
		version = v
	case nil:
		if strings.TrimSpace(text) == "" {
			// A new file: containerd 1.6 and 1.7 read version 2.
			text, version = "version = 2\n", 2
		}
	default:
		return fmt.Errorf("%s: version is %v, not a number", file, v)
	}
	table, path, err := runtimesTable(version)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if register {
		if lookup(cfg, append(path, name)) != nil {
			return fmt.Errorf("%s: runtime handler %q is already defined outside cocoon's block: remove it first", file, name)
		}
		begin, end := markers(name)
		if !strings.HasSuffix(text, "\n") && text != "" {
			text += "\n"
		}
		text += fmt.Sprintf("\n%s\n# A pod of this handler is one VM; privileged containers get no host devices.\n[%s.%s]\n  runtime_type = %q\n  privileged_without_host_devices = true\n%s\n",
			begin, table, name, typ, end)
		var check map[string]any
		if _, err := toml.Decode(text, &check); err != nil {
			return fmt.Errorf("%s: adding the handler would break the file (%w): add it by hand", file, err)
		}
		if got, _ := lookup(check, append(path, name, "runtime_type")).(string); got != typ {
			return fmt.Errorf("%s: the handler did not land where containerd reads it", file)
		}
	}
	if text == string(data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return statedir.WriteFile(file, []byte(text), mode)
}

// lookup returns the value at path in nested TOML tables, or nil.
func lookup(m map[string]any, path []string) any {
	var v any = m
	for _, k := range path {
		t, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		if v, ok = t[k]; !ok {
			return nil
		}
	}
	return v
}

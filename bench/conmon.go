package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cocoon-containers/cocoon/integration/conmontest"
)

// conmonTrue times a busybox true container's create and start through
// conmon, as CRI-O runs them (integration/conmontest), until conmon has written
// its exit status: with runc and with cocoon-runtime on the same bundle,
// interleaved. Deletion is not timed. Both are nil where conmon is
// missing; runc's where runc is.
func (b *bench) conmonTrue(ctx context.Context, bundle, out, bin string, runs int) (runc, cocoon []time.Duration, err error) {
	conmonPath, err := exec.LookPath("conmon")
	if err != nil {
		return nil, nil, nil
	}
	handler := func(name, path string, env ...string) *conmontest.Runtime {
		dir := filepath.Join(b.work, "conmon-"+name)
		return &conmontest.Runtime{
			Conmon:    conmonPath,
			Path:      path,
			Root:      filepath.Join(dir, "root"),
			Env:       append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...),
			ExitDir:   filepath.Join(dir, "exits"),
			SocketDir: filepath.Join(dir, "sockets"),
			LogLevel:  "error",
		}
	}
	cocoonRT := handler("cocoon", filepath.Join(bin, "cocoon-runtime"), "COCOON_CONFIG="+filepath.Join(out, "configuration.toml"))
	var runcRT *conmontest.Runtime
	if p, err := exec.LookPath("runc"); err == nil {
		runcRT = handler("runc", p)
	}
	for i := 0; i < runs; i++ {
		if runcRT != nil {
			d, err := timeConmonTrue(ctx, runcRT, bundle, fmt.Sprintf("bench-conmon-%d", i))
			if err != nil {
				return nil, nil, fmt.Errorf("runc: %w", err)
			}
			runc = append(runc, d)
		}
		d, err := timeConmonTrue(ctx, cocoonRT, bundle, fmt.Sprintf("bench-conmon-%d", i))
		if err != nil {
			return nil, nil, fmt.Errorf("cocoon-runtime: %w", err)
		}
		cocoon = append(cocoon, d)
	}
	return runc, cocoon, nil
}

// timeConmonTrue creates and starts container id of bundle through conmon
// and waits for its exit file; then it deletes the container.
func timeConmonTrue(ctx context.Context, rt *conmontest.Runtime, bundle, id string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	dir := filepath.Join(filepath.Dir(rt.Root), id)
	// conmon writes its files (pid files, attach socket, fifos) into the
	// bundle: one bundle per run, sharing the root file system.
	runBundle := filepath.Join(dir, "bundle")
	if err := copyBundle(bundle, runBundle); err != nil {
		return 0, err
	}
	c := &conmontest.Container{ID: id, Name: id, Bundle: runBundle, LogPath: filepath.Join(dir, "log"), Dir: filepath.Join(dir, "userdata")}
	start := time.Now()
	_, err := rt.Create(ctx, c)
	if err == nil {
		_, err = rt.Run(ctx, nil, "start", id)
	}
	if err == nil {
		_, err = rt.ExitCode(ctx, id)
	}
	d := time.Since(start)
	if _, derr := rt.Run(ctx, nil, "delete", "--force", id); err == nil {
		err = derr
	}
	return d, err
}

// copyBundle writes a bundle at to whose config.json is from's, with the
// root file system's path made absolute (from's rootfs).
func copyBundle(from, to string) error {
	data, err := os.ReadFile(filepath.Join(from, "config.json"))
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return err
	}
	root, ok := spec["root"].(map[string]any)
	if !ok {
		return fmt.Errorf("%s: config.json without root", from)
	}
	if p, _ := root["path"].(string); !filepath.IsAbs(p) {
		root["path"] = filepath.Join(from, p)
	}
	if data, err = json.Marshal(spec); err != nil {
		return err
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(to, "config.json"), data, 0o644)
}

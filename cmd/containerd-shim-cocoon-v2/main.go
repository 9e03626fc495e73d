// Command containerd-shim-cocoon-v2 is cocoon's containerd shim (runtime
// v2, runtime type io.containerd.cocoon.v2): one shim process and one VM per
// pod, or per container outside pods. See package shimv2.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/cocoon-containers/cocoon/factory"
	"github.com/cocoon-containers/cocoon/shimv2"
)

// version is set at build time with -ldflags -X main.version=...
var version = "dev"

func main() {
	// A refill of the sandbox pool that a shim started runs here, and
	// exits.
	factory.Main()
	// CRI-O asks every handler's binary for its features, as it asks runc.
	if len(os.Args) == 2 && os.Args[1] == shimv2.FeaturesCommand {
		if err := shimv2.WriteFeatures(os.Stdout, version); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
			os.Exit(1)
		}
		return
	}
	ctx := context.Background()
	// containerd before 2.3 starts a shim with another protocol than the
	// shim library's.
	handled, read, err := shimv2.RunLegacyStart(ctx, os.Args[1:], os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(1)
	}
	if handled {
		return
	}
	if read != nil {
		if err := giveBackStdin(read); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
			os.Exit(1)
		}
	}
	shimv2.RegisterTaskService()
	shim.RunShim(ctx, shimv2.Manager{Version: version}, func(c *shim.Config) {
		// The shim's only children are QEMU and cocoon-proxy, each reaped by
		// the goroutine that started it: containerd's reaper (wait4 on any
		// child) would steal their exit statuses.
		c.NoSubreaper = true
		c.NoReaper = true
	})
}

// giveBackStdin makes data os.Stdin again, for the shim library to read.
func giveBackStdin(data []byte) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("giving stdin back: %w", err)
	}
	go func() {
		_, _ = w.Write(data)
		w.Close()
	}()
	os.Stdin = r
	return nil
}

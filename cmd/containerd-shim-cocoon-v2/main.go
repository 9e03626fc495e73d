// Command containerd-shim-cocoon-v2 is cocoon's containerd shim (runtime
// v2, runtime type io.containerd.cocoon.v2): one shim process and one VM per
// pod, or per container outside pods. See package shimv2.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/containerd/containerd/runtime/v2/shim"

	"github.com/cocoon-containers/cocoon/factory"
	"github.com/cocoon-containers/cocoon/shimv2"
)

// version is set at build time with -ldflags -X main.version=...
var version = "dev"

func main() {
	// A refill of the sandbox pool that a shim started runs here, and
	// exits.
	factory.Main()
	// containerd 2.x's runtime introspection, which containerd 1.7's shim
	// library does not know.
	if slices.ContainsFunc(os.Args[1:], func(a string) bool { return a == "-"+shimv2.InfoFlag || a == "--"+shimv2.InfoFlag }) {
		if err := shimv2.WriteInfo(context.Background(), os.Stdout, os.Stdin, version); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
			os.Exit(1)
		}
		return
	}
	shim.Run(shimv2.RuntimeName, shimv2.New, func(c *shim.Config) {
		// The shim's only children are QEMU and cocoon-proxy, each reaped by
		// the goroutine that started it: containerd's reaper (wait4 on any
		// child) would steal their exit statuses.
		c.NoSubreaper = true
		c.NoReaper = true
	})
}

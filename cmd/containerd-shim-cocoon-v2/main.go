// Command containerd-shim-cocoon-v2 is cocoon's containerd shim (runtime
// v2, runtime type io.containerd.cocoon.v2): one shim process and one VM per
// pod, or per container outside pods. See package shimv2.
package main

import (
	"github.com/containerd/containerd/runtime/v2/shim"

	"github.com/cocoon-containers/cocoon/factory"
	"github.com/cocoon-containers/cocoon/shimv2"
)

func main() {
	// A refill of the sandbox pool that a shim started runs here, and
	// exits.
	factory.Main()
	shim.Run(shimv2.RuntimeName, shimv2.New, func(c *shim.Config) {
		// The shim's only children are QEMU and cocoon-proxy, each reaped by
		// the goroutine that started it: containerd's reaper (wait4 on any
		// child) would steal their exit statuses.
		c.NoSubreaper = true
		c.NoReaper = true
	})
}

package critest

import (
	"path/filepath"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// Version is the critest that `make critest` builds.
const Version = "v1.34.0"

// Path is where `make critest` puts critest: $COCOON_CACHE/bin (default
// /var/cache/cocoon/bin), outside the clone.
func Path() (string, error) {
	return testutil.CacheFile(filepath.Join("bin", "critest-"+Version), "critest "+Version, "make critest")
}

// BusyboxPath is where `make deps` unpacks Debian's dynamically linked
// busybox: $COCOON_CACHE/busybox/bin/busybox. Its shell runs commands
// from PATH, as the suite expects of the busybox image (a spec masks
// /bin/ls and expects `sh -c ls` to fail); busybox-static's runs its own
// applets first.
func BusyboxPath() (string, error) {
	return testutil.CacheFile("busybox/bin/busybox", "Debian's busybox", "make deps")
}

// Package podnettest holds what cocoon's integration tests of a pod's
// network features need (issue 25: a guest kernel that runs what pods
// run). Software in a pod programs the pod's network namespace, which under
// cocoon is the guest's: a service mesh's init container installs iptables
// rules that send the pod's TCP to its sidecar proxy (InitScript, with
// either iptables back end; meshproxy, the command beside this package, is
// the proxy), and privileged containers create bridges, tun devices and
// nftables rules (DevicesScript). Rootfs is the image they run in, with the
// distribution's own tools.
package podnettest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// Image is the test image's name (a CRI reference; Docker's tests use
// their own).
const Image = "docker.io/cocoon/nettools:test"

// ProxyPath is meshproxy's path in the image.
const ProxyPath = "/usr/local/bin/meshproxy"

// Rootfs makes at dir the test image's root file system:
// testutil.NetToolsRootfs plus meshproxy, built here.
func Rootfs(ctx context.Context, dir string) error {
	if err := testutil.NetToolsRootfs(dir); err != nil {
		return err
	}
	out := filepath.Join(dir, ProxyPath)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out,
		"github.com/cocoon-containers/cocoon/integration/podnettest/meshproxy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building meshproxy: %w: %s", err, b)
	}
	return nil
}

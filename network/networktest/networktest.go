// Package networktest makes network namespaces for tests, with ip(8), as a
// CNI plugin or a container engine would.
package networktest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

var seq atomic.Int32

// LoopbackNamespace makes a network namespace holding only its loopback,
// up, as a pod's is before its interface arrives, and returns its path. It
// is removed when the test ends. Tests that are not run as root skip.
func LoopbackNamespace(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	name := fmt.Sprintf("cocoontest%d-%d", os.Getpid()%100000, seq.Add(1))
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	for _, args := range [][]string{{"netns", "add", name}, {"-n", name, "link", "set", "lo", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return filepath.Join("/run/netns", name)
}

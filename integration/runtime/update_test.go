//go:build integration

package runtime_test

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestBlockIOWeight: a block I/O weight out of runc's range is refused
// naming the flag, before anything reaches the guest; one in range is
// accepted at create and by update (the VM has no block device to weigh).
func TestBlockIOWeight(t *testing.T) {
	const id = "blkio"
	s := baseSpec(t, "sleep", "600")
	w := uint16(300)
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{Weight: &w}
	mustRT(t, "run", "--detach", "--bundle", writeBundle(t, s), id)
	defer forceDelete(t, id)
	r := rt(t, "update", "--blkio-weight", "5000", id)
	if r.code != 1 || !strings.Contains(r.stderr, "blkio-weight") || !strings.Contains(r.stderr, "between 10 and 1000") || !oneLine(r.stderr) {
		t.Errorf("update --blkio-weight 5000: %v", r)
	}
	if r := rt(t, "update", "--blkio-weight", "500", id); r.code != 0 {
		t.Errorf("update --blkio-weight 500: %v", r)
	}
}

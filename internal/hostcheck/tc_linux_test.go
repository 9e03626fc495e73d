package hostcheck

import (
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestTCCheckLeavesNothing runs the real tc check: it needs root
// (CAP_NET_ADMIN), as cocoon does.
func TestTCCheckLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and tc")
	}
	before, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if err := tcCheck(); err != nil {
		t.Fatal(err)
	}
	after, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("links in this namespace changed: %d before, %d after", len(before), len(after))
	}
	for _, l := range after {
		if l.Attrs().Name == "cocoon-check0" || l.Attrs().Name == "cocoon-check1" {
			t.Fatalf("%s left in the caller's namespace", l.Attrs().Name)
		}
	}
}

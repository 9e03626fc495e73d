package testutil

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Suite is what a TestMain runs: *testing.M.
type Suite interface{ Run() int }

// RunAdopting runs an integration suite whose commands leave processes
// behind on purpose (relays, QEMU, the proxy, conmon: they outlive the
// command that started them, as with runc). The suite becomes their
// subreaper, as containerd's shim or a node's init would be, so that it can
// read their exit statuses; after the tests, leftovers reports what the
// suite left (a non-nil error fails the run), and every adopted process
// that has exited is reaped.
func RunAdopting(m Suite, leftovers func() error) int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "becoming the suite's subreaper:", err)
		return 1
	}
	code := m.Run()
	if err := leftovers(); err != nil {
		fmt.Fprintln(os.Stderr, "left behind after the suite:", err)
		code = 1
	}
	for {
		if pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); pid <= 0 || err != nil {
			return code
		}
	}
}

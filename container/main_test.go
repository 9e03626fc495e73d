package container

import (
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// TestMain runs the tests as root, or in a user namespace of their own
// (bind mounts into the fake sandboxes' shares); started as cocoon-relay,
// the test binary is a fake relay instead (fakeRelay).
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == RelayName {
		fakeRelay()
	}
	os.Exit(testutil.MainInUserNS(m))
}

// fakeRelay stands in for cocoon-relay in tests of the Runtime on fake
// sandboxes, whose agent lives in the test process and cannot be reached
// from another: it reports ready on the descriptor startRelay gives it (fd
// 3) and waits to be stopped, as a relay whose process runs does.
func fakeRelay() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	ready := os.NewFile(3, "ready")
	_, _ = ready.WriteString("ready\n")
	ready.Close()
	sig := <-sigs
	os.Exit(128 + int(sig.(syscall.Signal)))
}

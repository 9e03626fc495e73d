package container

import (
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
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
// 3) and waits to be stopped, as a relay whose process runs does. As a
// guard (--guard-fd), it waits for its relay's alive pipe (fd 3) to end.
func fakeRelay() {
	if slices.Contains(os.Args, "--guard-fd") {
		_, _ = io.Copy(io.Discard, os.NewFile(3, "alive"))
		os.Exit(0)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	ready := os.NewFile(3, "ready")
	_, _ = ready.WriteString("ready\n")
	ready.Close()
	sig := <-sigs
	os.Exit(128 + int(sig.(syscall.Signal)))
}

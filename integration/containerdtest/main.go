package containerdtest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// RunTests is a test package's TestMain: it starts a daemon, runs setup
// (image imports) within a few minutes, runs the tests, destroys the
// daemon's VM templates (Options.Templates), stops the daemon and checks
// that nothing is left of namespace ns. It returns the exit
// code; the daemon's log tail is printed on failure, or always with
// COCOON_TEST_DAEMON_LOG set.
func RunTests(m *testing.M, o Options, ns string, setup func(context.Context, *Daemon) error) int {
	d, err := Start(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := func() int {
		defer d.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := setup(ctx, d); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := m.Run()
		if d.Templates != nil {
			if err := d.Templates.Destroy(o.Templates); err != nil {
				fmt.Fprintln(os.Stderr, "after the suite:", err)
				code = 1
			}
		}
		return code
	}()
	if err := d.Leftovers(ns); err != nil {
		fmt.Fprintln(os.Stderr, "left behind after the suite:", err)
		code = 1
	}
	if code != 0 || os.Getenv("COCOON_TEST_DAEMON_LOG") != "" {
		fmt.Fprintf(os.Stderr, "--- containerd log tail:\n%s\n", d.LogTail())
	}
	return code
}

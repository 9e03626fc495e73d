package containerdtest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// RunTests is a test package's TestMain: it starts a daemon, runs setup
// (image imports) within a few minutes, runs the tests, destroys the
// daemon's VM templates (Options.Templates), stops the daemon and checks
// that nothing is left of namespace ns. It returns the exit
// code; the daemon's log tail is printed on failure, or always with
// COCOON_TEST_DAEMON_LOG set.
func RunTests(m testutil.Suite, o Options, ns string, setup func(context.Context, *Daemon) error) int {
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
			for _, err := range []error{d.allRestored(), d.Templates.Destroy(o.Templates)} {
				if err != nil {
					fmt.Fprintln(os.Stderr, "after the suite:", err)
					code = 1
				}
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

// allRestored checks, in the shims' debug log (containerd's), that every
// VM a shim started for a sandbox was restored from a template: one
// restore per start, none that failed or was skipped for a cold boot.
func (d *Daemon) allRestored() error {
	data, err := os.ReadFile(d.log)
	if err != nil {
		return fmt.Errorf("reading the shims' log: %w", err)
	}
	started, restored := map[string]int{}, map[string]int{}
	var problems []string
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.Contains(line, `msg="starting qemu"`):
			if m := qemuName.FindStringSubmatch(line); m != nil && !strings.HasPrefix(m[1], "template-") {
				started[m[1]]++
			}
		case strings.Contains(line, `msg="sandbox restored from its template"`):
			if m := sandboxField.FindStringSubmatch(line); m != nil {
				restored[m[1]]++
			}
		case strings.Contains(line, "booting cold") || strings.Contains(line, "booting it cold"):
			problems = append(problems, line)
		}
	}
	if len(started) == 0 {
		problems = append(problems, "no sandbox VM started (is the shim's debug log in containerd's?)")
	}
	for name, n := range started {
		if restored[name] != n {
			problems = append(problems, fmt.Sprintf("sandbox %s: %d vm(s) started, %d restored from a template", name, n, restored[name]))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("sandboxes not restored from a template: %s", strings.Join(problems, "; "))
	}
	return nil
}

var (
	qemuName     = regexp.MustCompile(`args="-name (\S+) `)
	sandboxField = regexp.MustCompile(` sandbox=(\S+)`)
)

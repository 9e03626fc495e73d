//go:build integration

package runtime_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The limits the runtimes run under, with prlimit: those the guest kernel
// starts cocoon's agent with (Linux's defaults for init), so that what a
// container inherits from its runtime is the same under both: RLIMIT_NOFILE
// 1024 soft, 4096 hard, RLIMIT_MEMLOCK 8 MiB. The runtimes are Go programs,
// whose runtime raises the soft RLIMIT_NOFILE at start (runc 1.1.5's Go
// 1.19 to the hard limit): the soft limit below the hard one shows whether
// the raise leaks into the container.
const (
	callerNofileSoft, callerNofileHard = 1024, 4096
	callerMemlock                      = 8 << 20
)

// procLimit is a row of /proc/<pid>/limits.
type procLimit struct{ typ, label, unit string }

// procLimits are the rows of /proc/<pid>/limits, in order.
var procLimits = []procLimit{
	{"RLIMIT_CPU", "cpu time", "seconds"},
	{"RLIMIT_FSIZE", "file size", "bytes"},
	{"RLIMIT_DATA", "data size", "bytes"},
	{"RLIMIT_STACK", "stack size", "bytes"},
	{"RLIMIT_CORE", "core file size", "bytes"},
	{"RLIMIT_RSS", "resident set", "bytes"},
	{"RLIMIT_NPROC", "processes", "processes"},
	{"RLIMIT_NOFILE", "open files", "files"},
	{"RLIMIT_MEMLOCK", "locked memory", "bytes"},
	{"RLIMIT_AS", "address space", "bytes"},
	{"RLIMIT_LOCKS", "file locks", "locks"},
	{"RLIMIT_SIGPENDING", "pending signals", "signals"},
	{"RLIMIT_MSGQUEUE", "msgqueue size", "bytes"},
	{"RLIMIT_NICE", "nice priority", ""},
	{"RLIMIT_RTPRIO", "realtime priority", ""},
	{"RLIMIT_RTTIME", "realtime timeout", "us"},
}

// limits are soft and hard values by rlimit type.
type limits map[string][2]uint64

// script returns a shell script printing the rows of l's types from
// /proc/<pid>/limits, spaces squeezed.
func (l limits) script(pid string) string {
	var labels []string
	for _, p := range procLimits {
		if _, ok := l[p.typ]; ok {
			labels = append(labels, p.label)
		}
	}
	return fmt.Sprintf("grep -E '^Max (%s) ' /proc/%s/limits | tr -s ' '", strings.Join(labels, "|"), pid)
}

// String is what script prints where l holds.
func (l limits) String() string {
	v := func(n uint64) string {
		if n == unix.RLIM_INFINITY {
			return "unlimited"
		}
		return strconv.FormatUint(n, 10)
	}
	var b strings.Builder
	for _, p := range procLimits {
		if lim, ok := l[p.typ]; ok {
			fmt.Fprintf(&b, "Max %s %s %s ", p.label, v(lim[0]), v(lim[1]))
			if p.unit != "" {
				b.WriteString(p.unit + " ")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// with returns a copy of l with m's limits.
func (l limits) with(m limits) limits {
	out := make(limits)
	for k, v := range l {
		out[k] = v
	}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// posix returns l as spec rlimits.
func (l limits) posix() []specs.POSIXRlimit {
	var out []specs.POSIXRlimit
	for _, p := range procLimits {
		if lim, ok := l[p.typ]; ok {
			out = append(out, specs.POSIXRlimit{Type: p.typ, Soft: lim[0], Hard: lim[1]})
		}
	}
	return out
}

// nofileLeak is what a runtime that leaks its Go runtime's raised soft
// RLIMIT_NOFILE shows instead of want: the soft limit at the hard one.
// Debian 12's runc 1.1.5 (Go 1.19) does, some runs and not others, in
// exec'd processes, and always where the spec leaves RLIMIT_NOFILE out
// (runc 1.1.12 cleared the raise in its init for a spec that sets it).
func nofileLeak(want limits) limits {
	lim, ok := want["RLIMIT_NOFILE"]
	if !ok {
		return want
	}
	return want.with(limits{"RLIMIT_NOFILE": {lim[1], lim[1]}})
}

// TestRlimitsSameAsRunc runs the same bundles with runc and cocoon-runtime
// and reads the limits of the init process, of a process exec'd with the
// container's rlimits and of one exec'd with rlimits of its own (issue 23).
// The limits a spec sets must hold as set, soft RLIMIT_NOFILE included;
// those it leaves out are the runtime's own as it started (the caller's for
// runc; for cocoon those the guest kernel gave the agent, which the callers
// here get too), not what the runtime's Go runtime or libraries raised
// them to: the agent's RLIMIT_MEMLOCK becomes unlimited once it loads a
// container's device filter. cocoon must show the right limits every time;
// runc's are compared where they are right, and logged where runc leaks
// its raised soft RLIMIT_NOFILE.
func TestRlimitsSameAsRunc(t *testing.T) {
	rts := runtimes(t)
	if err := haveCallerLimits(); err != nil {
		t.Fatal(err)
	}
	// Every limit but RLIMIT_AS (TestConformance's RlimitASWithSeccomp) and
	// RLIMIT_MEMLOCK (left out: inherited). None above the defaults of the
	// host or the guest's hard limits, so runc, whose root may lack
	// CAP_SYS_RESOURCE, can set them.
	set := limits{
		"RLIMIT_CPU":        {1000, 2000},
		"RLIMIT_FSIZE":      {1 << 30, 1 << 31},
		"RLIMIT_DATA":       {1 << 32, 1 << 33},
		"RLIMIT_STACK":      {4 << 20, 16 << 20},
		"RLIMIT_CORE":       {1000, 2000},
		"RLIMIT_RSS":        {1 << 30, 1 << 31},
		"RLIMIT_NPROC":      {2000, 3000},
		"RLIMIT_NOFILE":     {3000, 3999},
		"RLIMIT_LOCKS":      {100, 200},
		"RLIMIT_SIGPENDING": {1000, 2000},
		"RLIMIT_MSGQUEUE":   {100000, 200000},
		"RLIMIT_NICE":       {0, 0},
		"RLIMIT_RTPRIO":     {0, 0},
		"RLIMIT_RTTIME":     {100000, 200000},
	}
	inherited := limits{
		"RLIMIT_NOFILE":  {callerNofileSoft, callerNofileHard},
		"RLIMIT_MEMLOCK": {callerMemlock, callerMemlock},
	}
	withoutNofile := set.with(nil)
	delete(withoutNofile, "RLIMIT_NOFILE")
	// An exec'd process's own rlimits replace the container's: it gets the
	// runtime's for the others (only those the same on the host and in
	// the guest are read).
	own := limits{"RLIMIT_NOFILE": {100, 200}, "RLIMIT_CORE": {500, 600}}
	ownWant := own.with(limits{"RLIMIT_MEMLOCK": inherited["RLIMIT_MEMLOCK"]})
	for _, tc := range []struct {
		name      string
		container limits // the spec's rlimits
		want      limits // the init's and an exec'd process's, which gets the container's
	}{
		{"AllSet", set, set.with(limits{"RLIMIT_MEMLOCK": inherited["RLIMIT_MEMLOCK"]})},
		{"NofileLeftOut", withoutNofile, withoutNofile.with(inherited)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range rts {
				got := rlimitsOf(t, r, tc.name, tc.container.posix(), own.posix(), tc.want, ownWant)
				for what, want := range map[string]limits{"init": tc.want, "exec": tc.want, "exec with own rlimits": ownWant} {
					g := got[what]
					switch {
					case g == want.String():
					case r.name == "runc" && g == nofileLeak(want).String():
						t.Logf("runc's %s leaks its Go runtime's raised soft RLIMIT_NOFILE: no reference:\n%s", what, g)
					default:
						t.Errorf("%s, %s:\n%s\nwant\n%s", r.name, what, g, want)
					}
				}
			}
		})
	}
}

// haveCallerLimits reports whether this process's hard limits let prlimit
// give the runtimes the caller limits.
func haveCallerLimits() error {
	var nofile, memlock unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		return err
	}
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &memlock); err != nil {
		return err
	}
	if nofile.Max < callerNofileHard || memlock.Max < callerMemlock {
		return fmt.Errorf("the test runs the runtimes with RLIMIT_NOFILE %d:%d and RLIMIT_MEMLOCK %d (the guest agent's), above this process's hard limits (%d, %d)",
			callerNofileSoft, callerNofileHard, callerMemlock, nofile.Max, memlock.Max)
	}
	return nil
}

// rlimitsOf runs a container of rlimits with r, under the caller limits,
// and returns what the limits scripts of want and ownWant print for its
// init process, for a process exec'd with the container's rlimits and for
// one exec'd with own.
func rlimitsOf(t *testing.T, r runtimeUnderTest, name string, rlimits, own []specs.POSIXRlimit, want, ownWant limits) map[string]string {
	t.Helper()
	s := spec(t, privateRootfs(t), "sleep 600")
	s.Process.Rlimits = rlimits
	bundle := writeBundle(t, s)
	id := fmt.Sprintf("rlimit-%s-%s", strings.ToLower(name), r.name)
	call := func(args ...string) result {
		t.Helper()
		pargs := append([]string{
			fmt.Sprintf("--nofile=%d:%d", callerNofileSoft, callerNofileHard),
			fmt.Sprintf("--memlock=%d:%d", callerMemlock, callerMemlock),
			"--", r.bin,
		}, r.args(args...)...)
		return run(t, cmdOpts{}, "prlimit", pargs...)
	}
	if res := call("create", "--bundle", bundle, id); res.code != 0 {
		t.Fatalf("%s create: %v", r.name, res)
	}
	t.Cleanup(func() {
		if res := call("delete", "--force", id); res.code != 0 {
			t.Errorf("%s delete --force: %v", r.name, res)
		}
	})
	if res := call("start", id); res.code != 0 {
		t.Fatalf("%s start: %v", r.name, res)
	}
	process := specs.Process{
		Args:    []string{"sh", "-c", ownWant.script("self")},
		Env:     s.Process.Env,
		Cwd:     "/",
		Rlimits: own,
	}
	data, err := json.Marshal(process)
	if err != nil {
		t.Fatal(err)
	}
	pfile := filepath.Join(t.TempDir(), "process.json")
	if err := os.WriteFile(pfile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for what, args := range map[string][]string{
		"init":                  {"exec", id, "sh", "-c", want.script("1")},
		"exec":                  {"exec", id, "sh", "-c", want.script("self")},
		"exec with own rlimits": {"exec", "--process", pfile, id},
	} {
		res := call(args...)
		if res.code != 0 || res.stderr != "" {
			t.Errorf("%s %s: %v", r.name, what, res)
		}
		out[what] = res.stdout
		t.Logf("%s, %s:\n%s", r.name, what, res.stdout)
	}
	return out
}

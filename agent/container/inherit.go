package container

import (
	"fmt"
	"slices"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// A process inherits the limits its spec leaves out from its parent. Under
// runc that parent is runc, started for the one command, whose limits are
// its caller's. Here it is the agent, which runs as long as the guest, and
// whose own limits change as it runs: the cgroup v2 device filter loader
// (opencontainers/cgroups devices/ebpf) raises the agent's RLIMIT_MEMLOCK to
// unlimited when it loads a container's filter, noting that "this limit is
// not inherited into the container". That holds for runc, whose init
// process exists before the filter is loaded and whose exec is another runc;
// not for the agent, whose every later process (exec'd processes, the next
// container of a pod) got unlimited locked memory. So every process the
// agent starts gets, for each resource its spec leaves out, the limit the
// agent had when it started (ownRlimits).
//
// Two resources are left to what is already there:
//
//   - RLIMIT_NOFILE: the Go runtime raised the agent's soft limit before
//     main, so the original is not readable any more. Go gives it back
//     itself: a child started through os/exec (runc init) gets the original
//     soft limit, and runc init's own Go runtime, which raises it again,
//     restores it when it execs the container's program, unless the process
//     sets RLIMIT_NOFILE (libcontainer then clears the saved value and sets
//     the spec's).
//   - RLIMIT_AS: nothing in the agent changes it, and an RLIMIT_AS in a
//     process's list means the spec asked for one (see deferAddressSpace).

// ownRlimits returns the agent's current limits of the resources that its
// processes inherit from it, by resource number: every resource of
// rlimitTypes but RLIMIT_NOFILE and RLIMIT_AS.
func ownRlimits() ([]configs.Rlimit, error) {
	var out []configs.Rlimit
	for _, t := range rlimitTypes {
		if t == unix.RLIMIT_NOFILE || t == unix.RLIMIT_AS {
			continue
		}
		var rl unix.Rlimit
		if err := unix.Getrlimit(t, &rl); err != nil {
			return nil, fmt.Errorf("reading the agent's limit of resource %d: %w", t, err)
		}
		out = append(out, configs.Rlimit{Type: t, Soft: rl.Cur, Hard: rl.Max})
	}
	slices.SortFunc(out, func(a, b configs.Rlimit) int { return a.Type - b.Type })
	return out, nil
}

// withInherited returns rls followed by the limit in inherited of each
// resource that rls does not set. rls is not modified.
func withInherited(rls, inherited []configs.Rlimit) []configs.Rlimit {
	out := slices.Clone(rls)
	for _, in := range inherited {
		if !slices.ContainsFunc(rls, func(rl configs.Rlimit) bool { return rl.Type == in.Type }) {
			out = append(out, in)
		}
	}
	return out
}

package relay

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// A relay's guards SIGKILL its process in the guest should the relay die
// without saying that it exits by itself (a SIGKILL of the container PID;
// see cmd/relay/guard.go). The relay runs as PID 1 of a PID namespace of
// its own, and everything in that namespace dies with it, so its guards
// live in the caller's: cocoon-runtime starts two, and each replaces the
// other should it die first. They start with three descriptors:
//
//   - GuardFD: the read end of the relay's alive pipe, whose write end only
//     the relay holds; the relay writes AliveBytes to it before it exits by
//     itself.
//   - GuardFD+1 and GuardFD+2: the guard's Lifeline to its partner.

// GuardFD is the first of a guard's descriptors, as the guard sees them.
const GuardFD = 3

// AliveBytes is what the relay writes to its alive pipe when it exits by
// itself: one byte for each guard that reads it (each reads one), with room
// for the partners that guards start.
var AliveBytes = []byte("................................")

// Lifeline is a guard's pair of pipe ends towards its partner guard.
type Lifeline struct {
	// In reads end of file once the partner has died.
	In *os.File
	// Out is held until this guard dies: it is the partner's In.
	Out *os.File
}

// Close closes both ends.
func (l Lifeline) Close() {
	if l.In != nil {
		l.In.Close()
	}
	if l.Out != nil {
		l.Out.Close()
	}
}

// NewLifelines returns the lifelines of two partner guards: each one's In
// ends when the other's Out closes.
func NewLifelines() (a, b Lifeline, err error) {
	ar, bw, err := os.Pipe()
	if err != nil {
		return a, b, fmt.Errorf("making a guard's lifeline: %w", err)
	}
	br, aw, err := os.Pipe()
	if err != nil {
		ar.Close()
		bw.Close()
		return a, b, fmt.Errorf("making a guard's lifeline: %w", err)
	}
	return Lifeline{In: ar, Out: aw}, Lifeline{In: br, Out: bw}, nil
}

// StartGuard starts a guard: args is its command line (cocoon-relay
// --guard-fd 3 and the relay's flags), alive the read end of its relay's
// alive pipe, l its lifeline. It runs in a session of its own, with no
// stdio. The caller closes its own copies of alive and l, and reaps the
// guard (or exits and lets its subreaper do so).
func StartGuard(path string, args []string, alive *os.File, l Lifeline) (*exec.Cmd, error) {
	cmd := &exec.Cmd{
		Path:        path,
		Args:        args,
		Env:         []string{},
		ExtraFiles:  []*os.File{alive, l.In, l.Out}, // GuardFD, GuardFD+1, GuardFD+2
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a guard: %w", err)
	}
	return cmd, nil
}

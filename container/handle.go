package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/hooks"
	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// Handle is a container as one cocoon-runtime command holds it: its
// record, locked, and the container in its sandbox. Close releases both.
// Its operations check the record's status (CheckOp), then call the
// container's, which apply the pod rules.
type Handle struct {
	r    *Runtime
	rec  *Record
	lock *statedir.Lock
	c    *Container
	// relay is the init process's relay when this command started it.
	relay *RelayProcess
}

// Record returns the container's record.
func (h *Handle) Record() *Record { return h.rec }

// Relay returns the init process's relay when this command created the
// container; nil otherwise.
func (h *Handle) Relay() *RelayProcess { return h.relay }

// Close releases the sandbox's agent connection and the record's lock.
func (h *Handle) Close() {
	if h.c != nil && h.c.sb != nil {
		h.c.sb.Close()
	}
	h.Unlock()
}

// Unlock releases the record's lock only: other commands may act on the
// container while this one waits for it (run and exec in the foreground).
func (h *Handle) Unlock() {
	if h.lock != nil {
		h.lock.Unlock()
		h.lock = nil
	}
}

// Relock takes the record's lock again and reloads the record.
func (h *Handle) Relock() error {
	rec, lock, err := h.r.records().Lock(h.rec.ID)
	if err != nil {
		return err
	}
	h.rec, h.lock = rec, lock
	return nil
}

// callContext bounds a command's work on an existing container: the
// configured wall-clock bound, whatever the accelerator.
func (h *Handle) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.r.Config.Runtime.CommandTimeout.Duration)
}

// ready fails at once, with one line saying what to do, unless the
// container's sandbox is there and passes its health check.
func (h *Handle) ready(ctx context.Context) error {
	if err := h.c.Ready(ctx); err != nil {
		return withHint(h.rec.ID, err)
	}
	return nil
}

// withHint adds to a sandbox's failure what a user of cocoon-runtime does
// about it.
func withHint(id string, err error) error {
	if errors.Is(err, ErrSandboxGone) {
		return err
	}
	return fmt.Errorf("%w (delete --force %s removes it)", err, id)
}

// Start runs the init process's program, then the poststart hooks; a
// failing poststart hook kills the container, as with runc.
func (h *Handle) Start(ctx context.Context) error {
	rec := h.rec
	if err := CheckOp(OpStart, rec.ID, rec.CurrentStatus()); err != nil {
		return err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	// A container this command has just created (run) has a sandbox that
	// just answered: no health check.
	if h.relay == nil {
		if err := h.ready(ctx); err != nil {
			return err
		}
	}
	if err := h.c.Start(ctx); err != nil {
		return err
	}
	h.r.Log.WithField("container", rec.ID).Debug("container started")
	rec.Status = Running
	if err := h.r.records().Save(rec); err != nil {
		return err
	}
	if err := runHooks(ctx, rec, specs.StateRunning, hooks.Poststart); err != nil {
		h.c.Kill(ctx, "")
		return err
	}
	return nil
}

// Delete is runc delete (with force: of a running container too): it
// deletes the container from its sandbox by the pod rules
// (Container.Delete: the last one destroys the sandbox), lets its relay
// exit, runs the poststop hooks and removes the record.
func (h *Handle) Delete(ctx context.Context, force bool) error {
	rec := h.rec
	if !force {
		if err := CheckOp(OpDelete, rec.ID, rec.CurrentStatus()); err != nil {
			return err
		}
	}
	grace := h.c.m.Scaled(relayGrace)
	if h.c.sb != nil {
		gone, err := h.c.Delete(ctx)
		if err != nil {
			return err
		}
		if gone {
			// The relays lose the agent with the VM, and exit.
			grace = min(grace, killedRelayGrace)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, h.c.m.Scaled(deleteTimeout))
	defer cancel()
	stopRelay(ctx, rec.Pid, rec.PidStart, grace)
	if h.relay != nil {
		// Started by this command: reap it.
		h.relay.stop(0)
	}
	if rec.Status != Creating {
		if err := runHooks(ctx, rec, specs.StateStopped, hooks.Poststop); err != nil {
			h.r.Log.WithError(err).Warn("poststop hooks")
		}
	}
	return h.r.records().Remove(rec.ID)
}

// Signal sends sig to the init process, or with all to every process of
// the container (Container.Signal: a SIGKILL to a sandbox that cannot be
// asked kills its VM).
func (h *Handle) Signal(ctx context.Context, sig unix.Signal, all bool) error {
	op := OpKill
	if all {
		op = OpKillAll
	}
	if err := CheckOp(op, h.rec.ID, h.rec.CurrentStatus()); err != nil {
		return err
	}
	if h.c.sb == nil {
		if all {
			// Stopped, and its sandbox with it: nothing is left.
			return nil
		}
		return ErrNotRunning
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.c.Signal(ctx, "", sig, all); err != nil {
		if errors.Is(err, ErrSandboxGone) || errors.Is(err, sandbox.ErrVMGone) || errors.Is(err, sandbox.ErrUnresponsive) {
			return withHint(h.rec.ID, err)
		}
		return err
	}
	return nil
}

// Pause freezes the container's processes and records the status.
func (h *Handle) Pause(ctx context.Context) error {
	return h.freeze(ctx, OpPause, Paused, h.c.Pause)
}

// Resume thaws them and records the status.
func (h *Handle) Resume(ctx context.Context) error {
	return h.freeze(ctx, OpResume, Running, h.c.Resume)
}

// freeze runs do, which pauses or resumes, if op is allowed now; the
// container is then in status to.
func (h *Handle) freeze(ctx context.Context, op Op, to Status, do func(context.Context) error) error {
	if err := CheckOp(op, h.rec.ID, h.rec.CurrentStatus()); err != nil {
		return err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return err
	}
	if err := do(ctx); err != nil {
		return err
	}
	h.rec.Status = to
	return h.r.records().Save(h.rec)
}

// running fails unless the container runs (or is paused or created) in a
// sandbox that is there.
func (h *Handle) running() error {
	if h.rec.CurrentStatus() == Stopped || h.c.sb == nil {
		return ErrNotRunning
	}
	return nil
}

// Update changes the container's resources in its guest.
func (h *Handle) Update(ctx context.Context, res *specs.LinuxResources) error {
	if h.running() != nil {
		return errors.New("cannot update a stopped container")
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return err
	}
	return h.c.Update(ctx, res)
}

// Stats returns the container's statistics (runc's types.Stats as JSON).
func (h *Handle) Stats(ctx context.Context) (json.RawMessage, error) {
	if err := h.running(); err != nil {
		return nil, err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return nil, err
	}
	st, err := h.c.Stats(ctx)
	return st.JSON, err
}

// Processes lists the container's processes as the guest sees them.
func (h *Handle) Processes(ctx context.Context) ([]Process, error) {
	if err := h.running(); err != nil {
		return nil, err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return nil, err
	}
	return h.c.Processes(ctx)
}

// RelayPIDs lists the host PIDs of the live relays of the container's
// processes: init's first, then those of exec'd processes.
func (h *Handle) RelayPIDs() []int {
	if h.c.sb == nil {
		return []int{}
	}
	return relayPIDs(h.rec.Pid, relayAddress(h.c.sb), h.rec.ID)
}

// Process returns a copy of the container's process as create read it.
func (h *Handle) Process() (*specs.Process, error) {
	if h.rec.Process != nil {
		p := *h.rec.Process
		return &p, nil
	}
	// A record written before the process was kept in it.
	b, err := oci.LoadBundle(h.rec.Bundle)
	if err != nil {
		return nil, err
	}
	return b.Spec.Process, nil
}

// ExecOptions are exec's flags that are not the process's.
type ExecOptions struct {
	Detach        bool
	ConsoleSocket string
	PidFile       string
	// IgnorePaused allows exec in a paused container.
	IgnorePaused bool
}

// Exec starts process p in the container and its relay; in the
// foreground, the caller waits for the relay (RelayProcess.WaitForeground).
func (h *Handle) Exec(ctx context.Context, p *specs.Process, o ExecOptions) (*RelayProcess, error) {
	status := h.rec.CurrentStatus()
	if !(status == Paused && o.IgnorePaused) {
		if err := CheckOp(OpExec, h.rec.ID, status); err != nil {
			return nil, err
		}
	}
	mode, err := NewStdioMode(p.Terminal, o.ConsoleSocket, o.Detach)
	if err != nil {
		return nil, err
	}
	mode.setConsoleSize(p)
	if err := checkPidFile(o.PidFile); err != nil {
		return nil, err
	}
	execID, err := newExecID()
	if err != nil {
		return nil, err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return nil, err
	}
	if err := h.c.Exec(ctx, execID, p, mode.stdio()); err != nil {
		return nil, err
	}
	rp, err := startRelay(ctx, h.r.Relay, h.c.m.Accelerator.TimeoutScale(), relayConfig{
		sb: h.c.sb, containerID: h.rec.ID, execID: execID, mode: mode,
	})
	if err != nil {
		h.c.Kill(ctx, execID)
		return nil, err
	}
	if o.PidFile != "" {
		if err := WritePidFile(o.PidFile, rp.Pid); err != nil {
			rp.Kill()
			return nil, err
		}
	}
	return rp, nil
}

// newExecID returns a random exec ID.
func newExecID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("choosing an exec id: %w", err)
	}
	return "exec-" + hex.EncodeToString(b[:]), nil
}

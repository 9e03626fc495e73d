package relay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
)

// Forwarded tells whether the relay forwards sig to its process. Not
// forwarded: SIGCHLD (the relay's own children, it has none), SIGURG (the Go
// runtime preempts goroutines with it), SIGPIPE (a reader of the relay's
// output went away: the relay handles the failed write) and SIGWINCH (the
// relay's terminal was resized: it resizes the process's instead).
func Forwarded(sig os.Signal) bool {
	switch sig {
	case syscall.SIGCHLD, syscall.SIGURG, syscall.SIGPIPE, syscall.SIGWINCH:
		return false
	}
	_, ok := sig.(syscall.Signal)
	return ok
}

// forwardSignals handles the signals the relay receives until stop closes:
// it resizes the terminal on SIGWINCH and forwards the others to the
// process, in the order they arrive.
func (s *session) forwardSignals(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case sig, ok := <-s.cfg.Signals:
			if !ok {
				return
			}
			s.handleSignal(ctx, sig)
		}
	}
}

// handleSignal acts on one signal the relay received.
func (s *session) handleSignal(ctx context.Context, sig os.Signal) {
	if sig == syscall.SIGWINCH {
		if s.cfg.Console != nil {
			s.resize(ctx)
		}
		return
	}
	if !Forwarded(sig) {
		return
	}
	num := sig.(syscall.Signal)
	log := s.log.WithField("signal", sig.String())
	_, err := s.agent.SignalProcess(ctx, &api.SignalProcessRequest{
		ContainerId: s.cfg.ContainerID,
		ExecId:      s.cfg.ExecID,
		Signal:      uint32(num),
	})
	switch {
	case err == nil:
		log.Debug("forwarded signal")
	case errors.Is(err, agentclient.ErrNotFound):
		// The process exited meanwhile: WaitProcess reports it.
		log.WithError(err).Debug("signal after the exit")
	default:
		log.WithError(err).Warn("forwarding signal")
	}
}

// KillProcess sends SIGKILL to a container process: what a relay's guard
// does when the relay died without the process's exit, so that nothing in
// the guest outlives the host process that stands for it.
func KillProcess(ctx context.Context, a Agent, containerID, execID string) error {
	if _, err := a.SignalProcess(ctx, &api.SignalProcessRequest{
		ContainerId: containerID, ExecId: execID, Signal: uint32(unix.SIGKILL),
	}); err != nil {
		return fmt.Errorf("killing the process of a dead relay: %w", err)
	}
	return nil
}

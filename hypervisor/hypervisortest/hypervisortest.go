// Package hypervisortest provides fakes of hypervisor.Hypervisor and
// hypervisor.VM for unit tests of the layers above (sandbox, runtime).
//
// Hypervisor and VM are function-driven: each method calls the matching
// XxxFunc field, and a nil field makes the method fail with ErrNotImplemented
// (State returns the zero State). NewVM returns a VM whose functions keep an
// in-memory run state, for tests that only need a VM that behaves.
package hypervisortest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// ErrNotImplemented is returned by a method whose function field is nil.
var ErrNotImplemented = errors.New("hypervisortest: not implemented")

var _ hypervisor.Hypervisor = (*Hypervisor)(nil)

// Hypervisor is a fake hypervisor.Hypervisor.
type Hypervisor struct {
	StartFunc  func(ctx context.Context, cfg hypervisor.VMConfig) (hypervisor.VM, error)
	AttachFunc func(ctx context.Context, st hypervisor.State) (hypervisor.VM, error)
}

// Start calls StartFunc.
func (h *Hypervisor) Start(ctx context.Context, cfg hypervisor.VMConfig) (hypervisor.VM, error) {
	if h.StartFunc == nil {
		return nil, fmt.Errorf("start: %w", ErrNotImplemented)
	}
	return h.StartFunc(ctx, cfg)
}

// Attach calls AttachFunc.
func (h *Hypervisor) Attach(ctx context.Context, st hypervisor.State) (hypervisor.VM, error) {
	if h.AttachFunc == nil {
		return nil, fmt.Errorf("attach: %w", ErrNotImplemented)
	}
	return h.AttachFunc(ctx, st)
}

var _ hypervisor.VM = (*VM)(nil)

// VM is a fake hypervisor.VM.
type VM struct {
	StateFunc  func() hypervisor.State
	StatusFunc func(ctx context.Context) (hypervisor.Status, error)
	PauseFunc  func(ctx context.Context) error
	ResumeFunc func(ctx context.Context) error
	WaitFunc   func(ctx context.Context) error
	StopFunc   func(ctx context.Context) error
}

// State calls StateFunc, or returns the zero State.
func (v *VM) State() hypervisor.State {
	if v.StateFunc == nil {
		return hypervisor.State{}
	}
	return v.StateFunc()
}

// Status calls StatusFunc.
func (v *VM) Status(ctx context.Context) (hypervisor.Status, error) {
	if v.StatusFunc == nil {
		return "", fmt.Errorf("status: %w", ErrNotImplemented)
	}
	return v.StatusFunc(ctx)
}

// Pause calls PauseFunc.
func (v *VM) Pause(ctx context.Context) error {
	if v.PauseFunc == nil {
		return fmt.Errorf("pause: %w", ErrNotImplemented)
	}
	return v.PauseFunc(ctx)
}

// Resume calls ResumeFunc.
func (v *VM) Resume(ctx context.Context) error {
	if v.ResumeFunc == nil {
		return fmt.Errorf("resume: %w", ErrNotImplemented)
	}
	return v.ResumeFunc(ctx)
}

// Wait calls WaitFunc.
func (v *VM) Wait(ctx context.Context) error {
	if v.WaitFunc == nil {
		return fmt.Errorf("wait: %w", ErrNotImplemented)
	}
	return v.WaitFunc(ctx)
}

// Stop calls StopFunc.
func (v *VM) Stop(ctx context.Context) error {
	if v.StopFunc == nil {
		return fmt.Errorf("stop: %w", ErrNotImplemented)
	}
	return v.StopFunc(ctx)
}

// Machine is the in-memory run state behind a VM made by NewVM. Tests use
// it to look at the state or to make the "VMM" die.
type Machine struct {
	st hypervisor.State

	mu     sync.Mutex
	status hypervisor.Status
	exited chan struct{}
}

// NewVM returns a running fake VM that reports st, and the Machine that
// drives it. Pause and Resume switch between Running and Paused; Stop and
// Machine.Exit make it Stopped and release Wait. Pause and Resume of a
// stopped VM fail with hypervisor.ErrNotRunning; Stop of one succeeds.
func NewVM(st hypervisor.State) (*VM, *Machine) {
	m := &Machine{st: st, status: hypervisor.Running, exited: make(chan struct{})}
	v := &VM{
		StateFunc: func() hypervisor.State { return m.st },
		StatusFunc: func(ctx context.Context) (hypervisor.Status, error) {
			return m.Status(), nil
		},
		PauseFunc:  func(ctx context.Context) error { return m.set("pause", hypervisor.Paused) },
		ResumeFunc: func(ctx context.Context) error { return m.set("resume", hypervisor.Running) },
		WaitFunc: func(ctx context.Context) error {
			select {
			case <-m.exited:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		StopFunc: func(ctx context.Context) error {
			m.Exit()
			return nil
		},
	}
	return v, m
}

// Status returns the current run state.
func (m *Machine) Status() hypervisor.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// Exit makes the VM stop as if its VMM process had died; Wait returns.
func (m *Machine) Exit() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status != hypervisor.Stopped {
		m.status = hypervisor.Stopped
		close(m.exited)
	}
}

// Freeze makes the VM's VMM stop answering, as a SIGSTOP of its process
// would: its status is hypervisor.Frozen until Thaw.
func (m *Machine) Freeze() { _ = m.set("freeze", hypervisor.Frozen) }

// Thaw undoes Freeze.
func (m *Machine) Thaw() { _ = m.set("thaw", hypervisor.Running) }

// Exited is closed once the VM has stopped.
func (m *Machine) Exited() <-chan struct{} {
	return m.exited
}

func (m *Machine) set(what string, s hypervisor.Status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status == hypervisor.Stopped {
		return fmt.Errorf("%s: %w", what, hypervisor.ErrNotRunning)
	}
	m.status = s
	return nil
}

package hypervisortest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

func TestNilFuncsFail(t *testing.T) {
	ctx := context.Background()
	h := &Hypervisor{}
	if _, err := h.Start(ctx, hypervisor.VMConfig{}); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("Start = %v", err)
	}
	if _, err := h.Attach(ctx, hypervisor.State{}); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("Attach = %v", err)
	}
	v := &VM{}
	if st := v.State(); st != (hypervisor.State{}) {
		t.Errorf("State = %+v", st)
	}
	if _, err := v.Status(ctx); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("Status = %v", err)
	}
	for name, f := range map[string]func(context.Context) error{"Pause": v.Pause, "Resume": v.Resume, "Wait": v.Wait, "Stop": v.Stop} {
		if err := f(ctx); !errors.Is(err, ErrNotImplemented) {
			t.Errorf("%s = %v", name, err)
		}
	}
}

func TestFuncsAreCalled(t *testing.T) {
	ctx := context.Background()
	want := hypervisor.State{Hypervisor: "fake", PID: 42, Dir: "/run/x"}
	vm, _ := NewVM(want)
	var got hypervisor.VMConfig
	h := &Hypervisor{
		StartFunc: func(_ context.Context, cfg hypervisor.VMConfig) (hypervisor.VM, error) {
			got = cfg
			return vm, nil
		},
		AttachFunc: func(_ context.Context, st hypervisor.State) (hypervisor.VM, error) {
			if st != want {
				return nil, hypervisor.ErrNotRunning
			}
			return vm, nil
		},
	}
	v, err := h.Start(ctx, hypervisor.VMConfig{ID: "sb"})
	if err != nil || got.ID != "sb" || v.State() != want {
		t.Fatalf("Start = %v, %v (cfg %+v)", v, err, got)
	}
	if _, err := h.Attach(ctx, hypervisor.State{}); !errors.Is(err, hypervisor.ErrNotRunning) {
		t.Errorf("Attach = %v", err)
	}
}

func TestNewVM(t *testing.T) {
	ctx := context.Background()
	vm, m := NewVM(hypervisor.State{PID: 1})
	status := func(want hypervisor.Status) {
		t.Helper()
		if s, err := vm.Status(ctx); err != nil || s != want {
			t.Fatalf("Status = %q, %v; want %q", s, err, want)
		}
	}
	status(hypervisor.Running)
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	status(hypervisor.Paused)
	if err := vm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	status(hypervisor.Running)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := vm.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a running VM = %v", err)
	}
	m.Exit()
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("Wait after Exit = %v", err)
	}
	status(hypervisor.Stopped)
	if err := vm.Resume(ctx); !errors.Is(err, hypervisor.ErrNotRunning) {
		t.Errorf("Resume after Exit = %v", err)
	}
	if err := vm.Stop(ctx); err != nil {
		t.Errorf("Stop after Exit = %v", err)
	}
	<-m.Exited()
}

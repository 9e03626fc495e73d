// Package sandboxtest builds sandbox managers whose VMs are fakes
// (hypervisortest) and whose agent is a fake (clienttest), for unit tests of
// the layers above package sandbox: the container layer and the front ends.
package sandboxtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/hypervisortest"
	"github.com/cocoon-containers/cocoon/internal/mountns"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// Config returns the default configuration with empty kernel and initrd
// files of the test's own.
func Config(tb testing.TB) *config.Config {
	tb.Helper()
	cfg, err := config.Parse(config.Default())
	if err != nil {
		tb.Fatal(err)
	}
	assets := tb.TempDir()
	cfg.Hypervisor.Kernel = filepath.Join(assets, "vmlinux")
	cfg.Hypervisor.Initrd = filepath.Join(assets, "initrd.img")
	for _, f := range []string{cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return cfg
}

// Fakes is a sandbox manager on fake VMs and a fake agent.
type Fakes struct {
	// Manager creates and loads the sandboxes.
	Manager *sandbox.Manager
	// StopAgent ends the fake agent's connection.
	StopAgent func()

	mu       sync.Mutex
	machines map[string]*hypervisortest.Machine
	vms      map[string]*hypervisortest.VM
	started  int
}

// New returns a manager under a temporary root whose VMs are fakes and
// whose every sandbox's agent is a. Unless a has one, its DestroySandbox
// stops every fake VM, as a guest's power-off does.
func New(tb testing.TB, a *clienttest.Agent) *Fakes {
	tb.Helper()
	f := &Fakes{machines: map[string]*hypervisortest.Machine{}, vms: map[string]*hypervisortest.VM{}}
	if a.DestroySandboxFunc == nil {
		a.DestroySandboxFunc = func(context.Context, *api.DestroySandboxRequest) (*api.DestroySandboxResponse, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, m := range f.machines {
				m.Exit()
			}
			return &api.DestroySandboxResponse{}, nil
		}
	}
	d, stop := clienttest.NewDialer(tb, a)
	f.StopAgent = stop
	log := logrus.New()
	log.SetOutput(io.Discard)
	f.Manager = &sandbox.Manager{
		Root:        filepath.Join(tb.TempDir(), "sandboxes"),
		Config:      Config(tb),
		Accelerator: hypervisor.KVM,
		Log:         logrus.NewEntry(log),
		AgentDialer: d,
		Hypervisor: &hypervisortest.Hypervisor{
			StartFunc: func(ctx context.Context, vc hypervisor.VMConfig) (hypervisor.VM, error) {
				exited := make(chan struct{})
				pid, _ := VMMProcess(tb, vc.MountNamespace, exited)
				vm, m := hypervisortest.NewVM(hypervisor.State{Hypervisor: "fake", PID: pid, Dir: vc.Dir})
				go func() { <-m.Exited(); close(exited) }()
				f.mu.Lock()
				defer f.mu.Unlock()
				f.vms[vc.Dir], f.machines[vc.Dir] = vm, m
				f.started++
				return vm, nil
			},
			AttachFunc: func(_ context.Context, st hypervisor.State) (hypervisor.VM, error) {
				f.mu.Lock()
				defer f.mu.Unlock()
				m := f.machines[st.Dir]
				if m == nil || m.Status() == hypervisor.Stopped {
					return nil, hypervisor.ErrNotRunning
				}
				return f.vms[st.Dir], nil
			},
		},
	}
	return f
}

// VMMProcess starts a fake VMM's process, in the share's mount namespace
// ns as QEMU would be (it holds the namespace, and the share's mounts with
// it), until the test ends or exited is closed. It returns its PID and the
// namespace's name ("mnt:[inode]").
func VMMProcess(tb testing.TB, ns *os.File, exited <-chan struct{}) (int, string) {
	tb.Helper()
	if ns == nil {
		tb.Fatal("the sandbox started its VM without a mount namespace for its share")
	}
	cmd := exec.Command("sleep", "3600")
	if err := mountns.Do(ns, cmd.Start); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	go func() {
		select {
		case <-exited:
			_ = cmd.Process.Kill()
		case <-done:
		}
	}()
	tb.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	name, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", ns.Fd()))
	if err != nil {
		tb.Fatal(err)
	}
	return cmd.Process.Pid, name
}

// Machine returns the machine of the fake VM started for the sandbox in dir
// (sandbox.Sandbox.Dir), nil if none was.
func (f *Fakes) Machine(dir string) *hypervisortest.Machine {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.machines[dir]
}

// PIDs returns the PIDs of the fake VMs' processes (VMMProcess), in no
// particular order.
func (f *Fakes) PIDs() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var pids []int
	for _, vm := range f.vms {
		pids = append(pids, vm.State().PID)
	}
	return pids
}

// Started returns how many VMs the manager has started.
func (f *Fakes) Started() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started
}

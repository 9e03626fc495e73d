// Package hypervisor is the boundary between cocoon's sandbox logic and the
// virtual machine monitor that runs a sandbox. QEMU implements it today
// (hypervisor/qemu); nothing here names QEMU-only notions such as QMP or
// chardevs, so that Firecracker or Cloud Hypervisor can follow.
package hypervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// Accelerator is how guest code executes.
type Accelerator string

const (
	// KVM runs guest code on the CPU: needs vmx/svm and a usable /dev/kvm.
	KVM Accelerator = "kvm"
	// TCG is QEMU's software emulation: slow, but works everywhere.
	TCG Accelerator = "tcg"
)

// TimeoutScale is how many times slower than KVM a guest runs under a, so
// that boot and call deadlines can scale with it. TCG is an order of
// magnitude slower than KVM.
func (a Accelerator) TimeoutScale() time.Duration {
	if a == KVM {
		return 1
	}
	return 10
}

// SharedDir is a host directory exported to the guest under a mount tag:
// by the VMM itself (virtio-9p), or, when Socket is set, by a vhost-user
// file system daemon (virtiofsd) that the caller started on HostPath and
// that serves Socket; the VMM then shares the guest's memory with it.
type SharedDir struct {
	Tag      string
	HostPath string
	ReadOnly bool
	// Socket is the vhost-user socket of the daemon serving HostPath
	// (virtio-fs); empty exports HostPath with virtio-9p.
	Socket string
}

// VMConfig describes a VM to boot. Paths are absolute.
type VMConfig struct {
	// ID names the VM (the sandbox ID).
	ID string
	// Dir is the VM's private runtime directory (0700): the monitor socket
	// and pid file live there.
	Dir string
	// Binary is the VMM executable; empty means the implementation's default.
	Binary string
	// Machine is the machine model ("q35", "microvm", ...); empty means the
	// implementation's default.
	Machine     string
	Accelerator Accelerator
	VCPUs       int
	MemoryMiB   int
	Kernel      string
	Initrd      string
	// KernelParams are appended to the implementation's own parameters.
	KernelParams []string
	// ConsoleLog receives the guest's serial console.
	ConsoleLog string
	// AgentSocket is the host end (a unix socket served by the VMM) of the
	// serial port that carries the agent channel. Empty when Vsock is used.
	AgentSocket string
	// VsockCID, when non-zero, gives the guest a vhost-vsock device with
	// this context ID (only where /dev/vhost-vsock exists).
	VsockCID uint32
	// SharedDirs are exported to the guest (virtio-9p or virtio-fs).
	SharedDirs []SharedDir
	// MountNamespace, when set, is the mount namespace (an open
	// /proc/PID/ns/mnt file) that the VMM runs in: the one that holds the
	// mounts under SharedDirs, which the host's namespace does not see.
	MountNamespace *os.File
	// NICs are the guest's network interfaces, in order.
	NICs []NIC
	// Debug keeps the guest's kernel messages on the console.
	Debug bool
	// Template, when set, makes the VM a template or a clone of one.
	Template *Template
	// Cgroup, when set, receives the VMM's process before it runs its
	// first instruction (a host cgroup): everything the VMM does, every
	// page of guest memory it touches, is charged there.
	Cgroup Placer
}

// Placer places a process, by PID, where it is to run and be accounted: a
// host cgroup (hostcgroup.Cgroup).
type Placer interface {
	Add(pid int) error
}

// Template is a VM saved once booted, from which new VMs are restored
// instead of booted (warm start). Its guest RAM is a file; its device
// state is another. A VM started with Restore false boots with its RAM in
// MemoryFile, shared (the file receives every write), and can be saved
// with Saver.Save; one started with Restore true maps MemoryFile privately
// (copy-on-write: the template's pages stay shared between clones and are
// never written) and loads StateFile instead of booting. A clone's
// configuration must describe the same devices as its template's;
// backends (sockets, shared directory, taps) may differ.
type Template struct {
	MemoryFile string
	StateFile  string
	Restore    bool
}

// Saver is a VM that can be saved as a template: implemented by the VMs of
// hypervisors that support templates, for VMs started with a
// VMConfig.Template whose Restore is false.
type Saver interface {
	// Save stops the guest, writes its device state to the template's
	// StateFile (its RAM is already in MemoryFile), and stops the VMM.
	Save(ctx context.Context) error
}

// NIC is a guest network interface backed by a host tap device that the
// caller created and opened: the VMM gets the open descriptor, so that the
// tap can live in another network namespace than the VMM.
type NIC struct {
	// MAC is the guest interface's hardware address.
	MAC net.HardwareAddr
	// Tap is the open tap device (one queue). The VMM inherits a copy; the
	// caller closes its own after Start.
	Tap *os.File
	// MTU is the interface's MTU; 0 leaves the VMM's default.
	MTU int
}

// State is what must be persisted to find a running VM again from another
// process (the runtime CLI is short-lived).
type State struct {
	Hypervisor string `json:"hypervisor"`
	PID        int    `json:"pid"`
	Dir        string `json:"dir"`
}

// Status is the VM's run state.
type Status string

const (
	// Running: the guest executes.
	Running Status = "running"
	// Paused: the vCPUs are stopped.
	Paused Status = "paused"
	// Stopped: the VMM process is gone.
	Stopped Status = "stopped"
	// Frozen: the VMM process itself is stopped (SIGSTOP, a debugger, a
	// frozen cgroup): it answers nothing until it is continued.
	Frozen Status = "frozen"
)

// ErrNotRunning is returned when the VM's process has exited.
var ErrNotRunning = errors.New("vm is not running")

// Hypervisor boots VMs and finds running ones again.
type Hypervisor interface {
	// Start boots a VM and returns once its VMM process runs and answers its
	// control channel; the VMM outlives the calling process.
	Start(ctx context.Context, cfg VMConfig) (VM, error)
	// Attach finds a VM started earlier, possibly by another process.
	Attach(ctx context.Context, st State) (VM, error)
}

// VM is a running virtual machine.
type VM interface {
	// State returns what Attach needs to find this VM again.
	State() State
	// Status asks the VMM for the run state.
	Status(ctx context.Context) (Status, error)
	// Pause stops the vCPUs; Resume restarts them.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Wait returns when the VMM process has exited, or when ctx is done.
	Wait(ctx context.Context) error
	// Stop asks the VMM to quit, waits until ctx's deadline, then kills it.
	// Stopping a VM that already exited is not an error.
	Stop(ctx context.Context) error
}

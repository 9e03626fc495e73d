// Package hostcheck checks whether a host can run cocoon sandboxes: one
// Result per check, each pass, warn or fail, and for anything short of pass
// what to do about it. `cocoon-runtime check` prints them.
//
// Everything is read from the host as it is (files under /proc, /sys and
// /dev, the QEMU binary's own answers, a throw-away network namespace for
// tc); nothing is changed and no VM is booted (`cocoon-runtime probe` boots
// one).
package hostcheck

import (
	"context"
	"os/exec"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
)

// Status is the outcome of one check.
type Status string

const (
	// Pass: as it should be.
	Pass Status = "pass"
	// Warn: cocoon runs, but slower or with less than it could.
	Warn Status = "warn"
	// Fail: cocoon cannot run (or cannot do something common) until fixed.
	Fail Status = "fail"
)

// Result is one check.
type Result struct {
	// Name is short and stable: "cpu", "kvm", "qemu", ...
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Fix says what to do when Status is not Pass.
	Fix string `json:"fix,omitempty"`
}

// Host names what is checked. Zero fields mean the real host's files;
// tests point them elsewhere.
type Host struct {
	CPUInfo    string // /proc/cpuinfo
	KVM        string // /dev/kvm
	VhostVsock string // /dev/vhost-vsock
	Tun        string // /dev/net/tun
	Mounts     string // /proc/self/mounts
	// TC checks tc in a throw-away network namespace; nil means tcCheck.
	TC func() error
	// Command runs a program and returns its standard output; nil means
	// os/exec.
	Command func(ctx context.Context, name string, args ...string) ([]byte, error)
}

func (h Host) withDefaults() Host {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&h.CPUInfo, "/proc/cpuinfo")
	def(&h.KVM, "/dev/kvm")
	def(&h.VhostVsock, "/dev/vhost-vsock")
	def(&h.Tun, "/dev/net/tun")
	def(&h.Mounts, "/proc/self/mounts")
	if h.TC == nil {
		h.TC = tcCheck
	}
	if h.Command == nil {
		h.Command = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			cmd := exec.CommandContext(ctx, name, args...)
			// A QEMU unpacked beside the system's loads its own modules.
			cmd.Env = qemu.Environ(name)
			return cmd.Output()
		}
	}
	return h
}

// Input is what the checks are about: the effective configuration and the
// decisions the runtime takes from it.
type Input struct {
	Config *config.Config
	// Accelerator is the one the runtime would use and Why says why; Err
	// is set instead when the configured one cannot be used.
	Accelerator hypervisor.Accelerator
	Why         string
	Err         error
	// RuntimeVersion is the running cocoon-runtime's build version, which
	// the guest image should match.
	RuntimeVersion string
	// Helpers are cocoon's helper binaries by name, each with its path or
	// the error finding it.
	Helpers []Helper
	// Templates says whether sandboxes are restored from VM templates, and
	// TemplatesWhy why (factory.TemplatesOn).
	Templates    bool
	TemplatesWhy string
}

// Helper is one helper binary that the runtime starts.
type Helper struct {
	Name string
	Path string
	Err  error
}

// Run runs every check, in the order `check` prints them.
func Run(ctx context.Context, h Host, in Input) []Result {
	h = h.withDefaults()
	cfg := in.Config
	var rs []Result
	rs = append(rs, checkCPU(h), checkKVM(h, cfg.Hypervisor.Accelerator), checkAccelerator(in))
	q := probeQEMU(ctx, h, cfg.Hypervisor.Path)
	rs = append(rs, q.versionResult(), q.acceleratorResult(in.Accelerator), q.sharedFSResult(cfg))
	rs = append(rs, checkVirtiofsd(cfg)...)
	rs = append(rs, q.transportResult(cfg), checkTemplates(in))
	rs = append(rs, checkKernel(cfg.Hypervisor.Kernel), checkInitrd(cfg.Hypervisor.Initrd, in.RuntimeVersion))
	rs = append(rs, checkVsock(h, cfg.Agent.Transport), checkTun(h), checkTC(h), checkCgroups(h))
	for _, hp := range in.Helpers {
		rs = append(rs, checkHelper(hp))
	}
	return rs
}

// OK says whether cocoon can run: no check failed.
func OK(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return false
		}
	}
	return true
}

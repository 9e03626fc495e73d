package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// Defaults applied by Start to the zero fields of a VMConfig.
const (
	// DefaultBinary is looked up in PATH.
	DefaultBinary = "qemu-system-x86_64"
	// DefaultVCPUs is the guest's vCPU count.
	DefaultVCPUs = 1
	// DefaultMemoryMiB is the guest's memory size.
	DefaultMemoryMiB = 2048
	// DefaultQBoot is Debian's qboot firmware, used to boot a PVH vmlinux on
	// q35.
	DefaultQBoot = "/usr/share/qemu/qboot.rom"
)

// Limits checked by Validate.
const (
	// MaxVCPUs is the most vCPUs a guest may have.
	MaxVCPUs = 255
	// MinMemoryMiB is the least memory a guest may have: the kernel and an
	// initrd must fit.
	MinMemoryMiB = 64
	// maxTagLen bounds a 9p mount tag (virtio-fs allows 36 bytes).
	maxTagLen = 31
	// maxSocketPath is the room in sockaddr_un.sun_path, NUL included.
	maxSocketPath = 108
	// minMTU and maxMTU bound a NIC's MTU: IPv4's minimum, and virtio-net's
	// largest (64 KiB less the Ethernet header).
	minMTU = 68
	maxMTU = 65535 - 14
	// firstGuestCID is the lowest context ID a guest may have: 0-2 are
	// reserved (hypervisor, local, host).
	firstGuestCID = 3
)

// withDefaults returns cfg with its zero fields, other than Accelerator,
// filled in.
func withDefaults(cfg hypervisor.VMConfig) hypervisor.VMConfig {
	if cfg.Binary == "" {
		cfg.Binary = DefaultBinary
	}
	if cfg.Machine == "" {
		cfg.Machine = DefaultMachine
	}
	if cfg.VCPUs == 0 {
		cfg.VCPUs = DefaultVCPUs
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = DefaultMemoryMiB
	}
	return cfg
}

// Validate checks cfg without touching the file system: every field must be
// set (Start fills the defaults first) and consistent, paths absolute, and
// every file QEMU creates must lie inside cfg.Dir.
func Validate(cfg hypervisor.VMConfig) error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf(format, a...))
	}

	if cfg.ID == "" {
		bad("id is empty")
	} else if strings.ContainsFunc(cfg.ID, isControl) {
		bad("id %q contains control characters", cfg.ID)
	}

	if err := checkPath("dir", cfg.Dir); err != nil {
		errs = append(errs, err)
	} else if n := len(filepath.Join(cfg.Dir, QMPSocketName)); n >= maxSocketPath {
		bad("dir %q is too long: the qmp socket path would have %d bytes (at most %d)", cfg.Dir, n, maxSocketPath-1)
	}
	if cfg.Binary == "" {
		bad("binary is empty")
	}

	switch cfg.Machine {
	case MachineQ35, MachineMicroVM:
	default:
		bad("unknown machine type %q (want %q or %q)", cfg.Machine, MachineQ35, MachineMicroVM)
	}
	switch cfg.Accelerator {
	case hypervisor.KVM, hypervisor.TCG:
	default:
		bad("unknown accelerator %q (want %q or %q)", cfg.Accelerator, hypervisor.KVM, hypervisor.TCG)
	}
	if cfg.VCPUs < 1 || cfg.VCPUs > MaxVCPUs {
		bad("vcpus %d out of range 1-%d", cfg.VCPUs, MaxVCPUs)
	}
	if cfg.MemoryMiB < MinMemoryMiB {
		bad("memory %d MiB is below the minimum of %d MiB", cfg.MemoryMiB, MinMemoryMiB)
	}

	if err := checkPath("kernel", cfg.Kernel); err != nil {
		errs = append(errs, err)
	}
	if cfg.Initrd != "" {
		if err := checkPath("initrd", cfg.Initrd); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range cfg.KernelParams {
		if p == "" || strings.ContainsFunc(p, isControl) {
			bad("kernel parameter %q is empty or contains control characters", p)
		}
	}

	if cfg.ConsoleLog != "" {
		if err := checkInDir("console log", cfg.ConsoleLog, cfg.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.AgentSocket == "" && cfg.VsockCID == 0 {
		bad("no agent channel: set the agent socket or the vsock cid")
	}
	if cfg.AgentSocket != "" {
		if err := checkInDir("agent socket", cfg.AgentSocket, cfg.Dir); err != nil {
			errs = append(errs, err)
		} else if len(cfg.AgentSocket) >= maxSocketPath {
			bad("agent socket path %q is too long (%d bytes, at most %d)", cfg.AgentSocket, len(cfg.AgentSocket), maxSocketPath-1)
		}
		if p := filepath.Clean(cfg.AgentSocket); p == filepath.Join(cfg.Dir, QMPSocketName) ||
			p == filepath.Join(cfg.Dir, PIDFileName) || p == filepath.Join(cfg.Dir, LogFileName) {
			bad("agent socket %q collides with a file of qemu's", cfg.AgentSocket)
		}
	}
	if cfg.VsockCID != 0 && (cfg.VsockCID < firstGuestCID || cfg.VsockCID == ^uint32(0)) {
		bad("vsock cid %d is reserved (want %d to %d)", cfg.VsockCID, firstGuestCID, ^uint32(0)-1)
	}

	macs := map[string]bool{}
	for i, nic := range cfg.NICs {
		switch {
		case len(nic.MAC) != 6:
			bad("nic %d: mac %q is not an ethernet address", i, nic.MAC)
		case nic.MAC[0]&1 != 0:
			bad("nic %d: mac %s is a multicast address", i, nic.MAC)
		case macs[nic.MAC.String()]:
			bad("nic %d: mac %s is used twice", i, nic.MAC)
		}
		macs[nic.MAC.String()] = true
		if nic.Tap == nil {
			bad("nic %d: no tap device", i)
		}
		if nic.MTU < 0 || nic.MTU > maxMTU || (nic.MTU > 0 && nic.MTU < minMTU) {
			bad("nic %d: mtu %d out of range %d-%d", i, nic.MTU, minMTU, maxMTU)
		}
	}

	tags := map[string]bool{}
	for _, sd := range cfg.SharedDirs {
		if err := checkTag(sd.Tag); err != nil {
			errs = append(errs, err)
		} else if tags[sd.Tag] {
			bad("shared dir tag %q is used twice", sd.Tag)
		}
		tags[sd.Tag] = true
		if err := checkPath(fmt.Sprintf("shared dir %q", sd.Tag), sd.HostPath); err != nil {
			errs = append(errs, err)
		}
		if sd.Socket == "" {
			continue
		}
		if err := checkPath(fmt.Sprintf("shared dir %q socket", sd.Tag), sd.Socket); err != nil {
			errs = append(errs, err)
		} else if len(sd.Socket) >= maxSocketPath {
			bad("shared dir %q socket path %q is too long (%d bytes, at most %d)", sd.Tag, sd.Socket, len(sd.Socket), maxSocketPath-1)
		}
		if sd.ReadOnly {
			bad("shared dir %q: read-only is the virtio-fs daemon's option, not the vm's", sd.Tag)
		}
	}

	if t := cfg.Template; t != nil {
		if err := checkPath("template memory file", t.MemoryFile); err != nil {
			errs = append(errs, err)
		}
		if err := checkPath("template state file", t.StateFile); err != nil {
			errs = append(errs, err)
		}
		if sharesMemory(cfg) {
			bad("a template cannot have a virtio-fs share (vhost-user-fs does not migrate)")
		}
		if cfg.VsockCID != 0 {
			bad("a template cannot have a vsock device")
		}
	}

	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid vm config %q: %w", cfg.ID, err)
	}
	return nil
}

// checkPath requires p to be set and absolute.
func checkPath(what, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%s is empty", what)
	case !filepath.IsAbs(p):
		return fmt.Errorf("%s %q is not an absolute path", what, p)
	case strings.ContainsFunc(p, isControl):
		return fmt.Errorf("%s %q contains control characters", what, p)
	}
	return nil
}

// checkInDir requires p to be an absolute path strictly inside dir.
func checkInDir(what, p, dir string) error {
	if err := checkPath(what, p); err != nil {
		return err
	}
	if dir == "" {
		return nil // reported for dir itself
	}
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(p))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%s %q is not inside the vm directory %q", what, p, dir)
	}
	return nil
}

// checkTag accepts 9p mount tags made of letters, digits, '_', '-' and '.'.
func checkTag(tag string) error {
	if tag == "" || len(tag) > maxTagLen {
		return fmt.Errorf("shared dir tag %q must have 1 to %d characters", tag, maxTagLen)
	}
	for _, r := range tag {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("shared dir tag %q may hold only letters, digits, '_', '-' and '.'", tag)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// checkFiles checks what Validate cannot: that the files cfg names exist.
func checkFiles(cfg hypervisor.VMConfig) error {
	var errs []error
	want := func(what, p string, dir bool) {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		case dir && !fi.IsDir():
			errs = append(errs, fmt.Errorf("%s %q is not a directory", what, p))
		case !dir && !fi.Mode().IsRegular():
			errs = append(errs, fmt.Errorf("%s %q is not a regular file", what, p))
		}
	}
	want("vm directory", cfg.Dir, true)
	want("kernel", cfg.Kernel, false)
	if cfg.Initrd != "" {
		want("initrd", cfg.Initrd, false)
	}
	for _, sd := range cfg.SharedDirs {
		want(fmt.Sprintf("shared dir %q", sd.Tag), sd.HostPath, true)
	}
	if t := cfg.Template; t != nil && t.Restore {
		want("template memory file", t.MemoryFile, false)
		want("template state file", t.StateFile, false)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid vm config %q: %w", cfg.ID, err)
	}
	return nil
}

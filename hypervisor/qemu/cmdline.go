package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
)

// Machine types that the command-line builder knows.
const (
	// MachineQ35 is the PC machine with a PCI Express bus: virtio-*-pci
	// devices, ACPI, firmware (qboot for a PVH vmlinux, SeaBIOS for a
	// bzImage). Needed for PCI hot-plug.
	MachineQ35 = "q35"
	// MachineMicroVM is QEMU's minimal machine: virtio-mmio devices, no PCI,
	// the fastest boot. Under TCG the guest must be told the TSC rate.
	MachineMicroVM = "microvm"
	// DefaultMachine is used when VMConfig.Machine is empty: microvm boots
	// to the agent fastest on the hosts measured (see the package doc).
	DefaultMachine = MachineMicroVM
)

// Names of the files that Start creates in VMConfig.Dir.
const (
	// QMPSocketName is QEMU's control socket.
	QMPSocketName = "qmp.sock"
	// PIDFileName is written and locked by QEMU.
	PIDFileName = "qemu.pid"
	// LogFileName receives QEMU's own stdout and stderr (not the guest's
	// console): a bad option or a failed device shows up there.
	LogFileName = "qemu.log"
)

// Features are the facts, beyond the VMConfig, that the command line depends
// on: they come from the host, from the QEMU binary and from the kernel file.
// Keeping them explicit makes CommandLine a pure function.
type Features struct {
	// KernelELF is true when the kernel is an uncompressed ELF vmlinux,
	// booted through its PVH entry point; false for a bzImage.
	KernelELF bool
	// TSCkHz is the host's TSC rate. Under TCG the guest's TSC ticks at the
	// host's rate, and a microvm guest, which has no PIT to calibrate
	// against, hangs unless told (tsc_early_khz).
	TSCkHz uint64
	// Sandbox is true when the QEMU binary supports -sandbox (seccomp).
	Sandbox bool
	// QBoot is the qboot firmware used to boot a PVH vmlinux on q35; empty
	// leaves QEMU's default BIOS, which is slower but works.
	QBoot string
	// Version is the QEMU binary's; the zero Version is taken for the
	// oldest supported (7.2).
	Version Version
	// DataDir is the firmware directory of a QEMU unpacked beside the
	// system's (DataDir), given to it with -L; empty for the system's.
	DataDir string
}

// Kernel parameters that every guest gets. panic=1 turns a guest panic into
// a reset, and -no-reboot turns a reset into QEMU's exit, so a dead guest
// never lingers. reboot=t (triple fault) resets the CPU without needing a
// keyboard controller or ACPI, which microvm lacks. noreplace-smp skips
// patching SMP alternatives out on a one-vCPU guest: under TCG the patching
// invalidates translated code, and skipping it saved ~0.12 s of boot on both
// machine types (it also spares re-patching when vCPUs are hot-plugged).
// no_timer_check, rcupdate.rcu_expedited=1, cryptomgr.notests and
// 8250.nr_uarts=1 made no measurable difference and are left out;
// tsc=reliable made none to boot but matters to idle guests (kernelParams).
var baseKernelParams = []string{"console=ttyS0", "panic=1", "reboot=t", "noreplace-smp"}

// tcgTBSizeMiB bounds TCG's translation cache. QEMU 7.2 reserves 1 GiB by
// default and touches it as code gets translated: a boot fills ~26-30 MiB,
// and a busy guest keeps growing it up to the bound, all of it resident.
// 256 MiB caps that at a quarter while leaving room for large workloads
// before QEMU has to flush and retranslate; a bound of 32 MiB did not slow
// boot down either.
const tcgTBSizeMiB = 256

// tcgCPU is the CPU model under TCG: QEMU's default (qemu64) plus ARAT
// (always running APIC timer). Without ARAT the guest kernel assumes its
// local APIC timer stops in deep idle and, finding no broadcast timer to
// fall back on (microvm has no HPET and no PIT), never enters one-shot
// mode: no high-resolution timers and no tickless idle, so an idle guest
// took all HZ (250) timer interrupts a second, each one a wakeup of
// QEMU's vCPU and main threads: ~50 millicores of host CPU per idle
// sandbox. With ARAT the tick stops while the guest is idle. TCG emulates
// the APIC timer from QEMU's virtual clock, which runs in every idle state.
const tcgCPU = "qemu64,+arat"

// GuestABI versions what the guest sees of the machine beyond VMConfig:
// the CPU model and its features, devices that are always there, the
// kernel parameters CommandLine adds. A saved VM (a template) only
// restores into the same ABI, so sandbox's template key includes it: bump
// it whenever such a change is made.
const GuestABI = 3

// CommandLine builds QEMU's arguments (without the binary) for cfg. cfg must
// have its defaults applied (see Start); CommandLine validates it again.
func CommandLine(cfg hypervisor.VMConfig, f Features) ([]string, error) {
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	microvm := cfg.Machine == MachineMicroVM
	tcg := cfg.Accelerator == hypervisor.TCG
	if microvm && tcg && f.TSCkHz == 0 {
		return nil, fmt.Errorf("building qemu command line: machine %s under tcg needs the host tsc rate, which is unknown", cfg.Machine)
	}

	// device picks the virtio transport of the machine type.
	device := func(kind string) string {
		if microvm {
			return kind + "-device"
		}
		return kind + "-pci"
	}

	args := []string{
		"-name", escape(cfg.ID),
		"-nodefaults",
		"-no-user-config",
		"-display", "none",
		"-no-reboot",
	}
	if f.Sandbox {
		// QEMU needs neither fork/exec nor set*id, affinity or scheduler
		// changes once running.
		args = append(args, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
	}

	// A vhost-user device's daemon reads and writes guest memory itself:
	// the RAM must be a shared memfd (works under TCG as under KVM).
	shared := sharesMemory(cfg)
	machineOpts := ""
	if shared || cfg.Template != nil {
		machineOpts = ",memory-backend=" + memoryBackendID
	}
	switch cfg.Machine {
	case MachineMicroVM:
		// rtc=off costs about a second of boot: the kernel waits for it.
		// pit=off: Linux 6.1 leaves the PIT's channel 0 running (a square
		// wave of period 65536) when it ticks from the local APIC, and
		// QEMU then woke every 27 ms to toggle an interrupt line that the
		// guest has masked: ~5 of an idle sandbox's ~7 millicores. The
		// guest needs no PIT: it gets the TSC rate from tsc_early_khz
		// and its timer from the APIC; boot was no slower without it.
		args = append(args, "-M", "microvm,rtc=on,pit=off"+machineOpts)
		if f.QBoot != "" {
			// microvm's firmware is qboot, which QEMU finds as
			// bios-microvm.bin in its data directory; Debian 13's QEMU
			// 10 ships qboot.rom without that name, and then falls back
			// to SeaBIOS, whose tables leave a Linux guest hung in its
			// ACPI setup. Named, it is found on every release.
			args = append(args, "-bios", f.QBoot)
		}
		if shared {
			// QEMU's virtio-mmio transport is legacy (version 1) by
			// default, which vhost-user daemons refuse ("virtio legacy
			// devices aren't supported by libvhost-user").
			args = append(args, "-global", "virtio-mmio.force-legacy=false")
		}
	case MachineQ35:
		// Drop the built-in devices a sandbox never uses.
		args = append(args, "-M", "q35,sata=off,smbus=off,vmport=off"+machineOpts)
		if f.KernelELF && f.QBoot != "" {
			args = append(args, "-bios", f.QBoot)
		}
	}

	if tcg {
		// thread= stays QEMU's default (one host thread per vCPU where
		// supported); the CPU model stays the default too (-cpu max made
		// guest copies 2-5x slower under TCG: byte-wise rep movsb), plus
		// ARAT (see tcgCPU).
		args = append(args, "-accel", "tcg,tb-size="+strconv.Itoa(tcgTBSizeMiB), "-cpu", tcgCPU)
	} else {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	}

	args = append(args,
		"-smp", strconv.Itoa(cfg.VCPUs),
		"-m", strconv.Itoa(cfg.MemoryMiB),
	)
	switch t := cfg.Template; {
	case t != nil:
		// A template's RAM is its memory file, shared so that the file
		// receives the guest's writes; a clone maps it privately
		// (copy-on-write), so the template never changes and its pages
		// are shared between the clones. From QEMU 8.2 a clone opens the
		// file read-only (readonly=on), its private mapping still being
		// writable RAM (rom=off): the template cannot be written through
		// it whatever the clone's QEMU does.
		opts := "share=on"
		switch {
		case t.Restore && f.Version.ReadOnlyTemplates():
			opts = "share=off,readonly=on,rom=off"
		case t.Restore:
			opts = "share=off"
		}
		args = append(args, "-object", fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=%s,%s", memoryBackendID, cfg.MemoryMiB, escape(t.MemoryFile), opts))
	case shared:
		args = append(args, "-object", fmt.Sprintf("memory-backend-memfd,id=%s,size=%dM,share=on", memoryBackendID, cfg.MemoryMiB))
	}
	args = append(args, "-kernel", cfg.Kernel)
	if cfg.Initrd != "" {
		args = append(args, "-initrd", cfg.Initrd)
	}
	args = append(args, "-append", strings.Join(kernelParams(cfg, f), " "))

	// Serial console: to the log file, or nowhere.
	if cfg.ConsoleLog != "" {
		args = append(args,
			"-chardev", "file,id=console,path="+escape(cfg.ConsoleLog),
			"-serial", "chardev:console")
	} else {
		args = append(args, "-serial", "null")
	}

	// Agent channel: a virtio-serial port whose host end is a unix socket
	// that QEMU serves. wait=off: QEMU does not block for a client, and the
	// proxy connects once the VM runs.
	if cfg.AgentSocket != "" {
		args = append(args,
			"-device", device("virtio-serial")+",id=serial0",
			"-chardev", "socket,id=agent,path="+escape(cfg.AgentSocket)+",server=on,wait=off",
			"-device", "virtserialport,bus=serial0.0,chardev=agent,name="+api.AgentPortName,
		)
	}

	if cfg.VsockCID != 0 {
		args = append(args, "-device", fmt.Sprintf("%s,id=vsock0,guest-cid=%d", device("vhost-vsock"), cfg.VsockCID))
	}

	for i, sd := range cfg.SharedDirs {
		if sd.Socket != "" {
			// virtio-fs: QEMU connects to the daemon's socket (the
			// daemon must be listening before QEMU starts).
			args = append(args,
				"-chardev", fmt.Sprintf("socket,id=vfs%d,path=%s", i, escape(sd.Socket)),
				"-device", fmt.Sprintf("%s,id=fs%d,chardev=vfs%d,tag=%s,queue-size=%d", device("vhost-user-fs"), i, i, sd.Tag, virtiofsQueueSize),
			)
			continue
		}
		// security_model=none: files are created with the guest's
		// credentials (QEMU runs as root) and failing chown/chmod are
		// ignored. multidevs=remap keeps inode numbers unique across the
		// bind mounts (one per container rootfs and volume) under the share.
		fsdev := fmt.Sprintf("local,id=fsdev%d,path=%s,security_model=none,multidevs=remap", i, escape(sd.HostPath))
		if sd.ReadOnly {
			fsdev += ",readonly=on"
		}
		args = append(args,
			"-fsdev", fsdev,
			"-device", fmt.Sprintf("%s,id=fs%d,fsdev=fsdev%d,mount_tag=%s", device("virtio-9p"), i, i, sd.Tag),
		)
	}

	// NICs: the tap descriptors are passed to QEMU as ExtraFiles, so the
	// i-th one is descriptor NICFirstFD+i. One queue, no vhost-net (not
	// available under TCG, and the tap may live in another namespace).
	for i, nic := range cfg.NICs {
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=net%d,fd=%d", i, NICFirstFD+i),
			"-device", nicDevice(device("virtio-net"), i, nic),
		)
	}

	// Entropy for the guest's CRNG from the host (rng-builtin backend).
	args = append(args, "-device", device("virtio-rng")+",id=rng0")

	if cfg.Template != nil && cfg.Template.Restore {
		// The device state is loaded once QMP has set the migration
		// capabilities (see restore): QEMU 7.2 cannot set them on its
		// command line. From 9.1 it comes from a file in an fdset.
		if f.Version.fileMigration() {
			args = append(args, "-add-fd", fmt.Sprintf("fd=%d,set=%d", templateFD(cfg), templateFDSet))
		}
		args = append(args, "-incoming", "defer")
	}
	if f.DataDir != "" {
		args = append(args, "-L", f.DataDir)
	}

	args = append(args,
		"-qmp", "unix:"+escape(filepath.Join(cfg.Dir, QMPSocketName))+",server=on,wait=off",
		"-pidfile", filepath.Join(cfg.Dir, PIDFileName),
	)
	return args, nil
}

// memoryBackendID names the guest RAM's memory backend when it is shared.
const memoryBackendID = "mem"

// virtiofsQueueSize is the request queue's depth of a vhost-user-fs
// device (QEMU's default is 128); Kata uses 1024 too.
const virtiofsQueueSize = 1024

// sharesMemory reports whether a device of cfg needs the guest's RAM
// shared with a daemon: a virtio-fs share.
func sharesMemory(cfg hypervisor.VMConfig) bool {
	for _, sd := range cfg.SharedDirs {
		if sd.Socket != "" {
			return true
		}
	}
	return false
}

// NICFirstFD is the descriptor number of the first NIC's tap in QEMU:
// Start passes the taps as exec.Cmd.ExtraFiles, which begin at 3.
const NICFirstFD = 3

// templateFD is the descriptor number, in QEMU, of a template's state file
// (written by Save, read by a restore): it follows the taps.
func templateFD(cfg hypervisor.VMConfig) int { return NICFirstFD + len(cfg.NICs) }

// templateFDSet is the fdset that holds a template's state file for a
// "file:" migration (QEMU 9.1 and later).
const templateFDSet = 7

// nicDevice is the -device value of the i-th NIC.
func nicDevice(driver string, i int, nic hypervisor.NIC) string {
	d := fmt.Sprintf("%s,id=nic%d,netdev=net%d,mac=%s", driver, i, i, nic.MAC)
	if nic.MTU > 0 {
		// host_mtu tells the guest driver the MTU (VIRTIO_NET_F_MTU).
		d += ",host_mtu=" + strconv.Itoa(nic.MTU)
	}
	return d
}

// kernelParams returns the guest kernel's command line: ours, then the
// caller's (which may override ours: the kernel keeps the last value).
func kernelParams(cfg hypervisor.VMConfig, f Features) []string {
	p := append([]string(nil), baseKernelParams...)
	if !cfg.Debug {
		p = append(p, "quiet")
	}
	if cfg.Accelerator == hypervisor.TCG {
		// The guest's TSC is the host's (invariant) TSC under TCG, but
		// the kernel's clocksource watchdog checks it against jiffies,
		// and a VM restored from a template, whose TSC has jumped while
		// its jiffies have not, can fail that check (one of the first two
		// clones measured did): the TSC was marked unstable, the clock fell back to jiffies,
		// and without a high-resolution clocksource the tick never
		// stopped (250 timer interrupts a second, ~50 millicores of
		// host CPU while idle). tsc=reliable skips the watchdog.
		p = append(p, "tsc=reliable")
		if cfg.Machine == MachineMicroVM {
			p = append(p, "tsc_early_khz="+strconv.FormatUint(f.TSCkHz, 10))
		}
	}
	return append(p, cfg.KernelParams...)
}

// escape quotes a value for a QEMU option string, where a comma separates
// options and ",," stands for a literal comma.
func escape(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}

// splitOptions splits a QEMU option string at single commas, turning ",,"
// back into ",". It undoes escape.
func splitOptions(s string) []string {
	var (
		out []string
		cur strings.Builder
	)
	for i := 0; i < len(s); i++ {
		if s[i] != ',' {
			cur.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == ',' {
			cur.WriteByte(',')
			i++
			continue
		}
		out = append(out, cur.String())
		cur.Reset()
	}
	return append(out, cur.String())
}

// Package qemu runs cocoon's VMs with QEMU: it builds the command line from
// a hypervisor.VMConfig, starts QEMU detached so that the VM outlives the
// short-lived runtime, controls it through QMP, supervises its process, and
// detects the accelerator (KVM or TCG). Linux only.
//
// Two machine types work: microvm (virtio-mmio, the default) and q35
// (virtio-pci). Both boot an uncompressed vmlinux through its PVH entry
// point, or a bzImage. Under TCG on a 2-core host (minimal guest kernel,
// -smp 1 -m 2048, 15 interleaved runs), the time from starting QEMU to a line
// that /init writes on the agent port was, min/median/max in seconds:
//
//	microvm, vmlinux (PVH)        0.71 / 0.79 / 1.25
//	q35 + qboot, vmlinux (PVH)    0.81 / 0.87 / 1.26
//	microvm, bzImage              0.92 / 0.96 / 1.46
//	q35 + SeaBIOS, bzImage        1.15 / 1.20 / 1.85
//
// hence DefaultMachine. Boot the vmlinux where there is one.
//
// # Privileges
//
// A guest that escapes into QEMU must not get root's powers on the host.
// QEMU stays uid 0 (its 9p server, security_model=none, serves image files
// of every owner and mode with its own credentials: an unprivileged uid
// could not read an image's root-only files, nor write the files of a
// container running as another non-root uid without CAP_DAC_OVERRIDE, and
// mapped-xattr does not fit root file systems that the host's engine
// prepared), but starts with:
//
//   - VMMCapabilities only, in the effective, permitted and bounding sets
//     (a file server's: CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
//     CAP_FOWNER, CAP_FSETID, CAP_SETFCAP), none inheritable or ambient: no
//     CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_MKNOD, CAP_SYS_CHROOT, CAP_KILL,
//     CAP_NET_ADMIN, set*id, ...;
//   - no_new_privs, and QEMU's own seccomp filter (-sandbox on, with
//     elevateprivileges, spawn, resourcecontrol and obsolete denied);
//   - where the kernel has Landlock, a ruleset that lets it write only its
//     VM directory (sockets, pid file, logs and the share under it), the
//     console log and a few device nodes, and read only its binary,
//     libraries and firmware, the kernel and initrd, /proc and /sys: the
//     rest of the host, /etc/shadow included, is out of its reach whatever
//     CAP_DAC_OVERRIDE says.
//
// The sandbox package completes this: every bind into the share is nodev
// and nosuid (an image's device node cannot be opened on the host through
// it), a read-only volume is read-only from the first moment, and a
// read-only root file system is made read-only on the host once the
// container exists. -runas was rejected for the reason above, -chroot
// because it needs CAP_SYS_CHROOT, which is also what escapes a chroot.
// Measured cost (TCG, 2 cores, 6-8 interleaved runs each, medians): none
// beyond the noise: sandbox create to agent ready 1.12-1.24 s before,
// 1.10-1.22 s after; a 512 MiB read through 9p 0.50 s before, 0.47 s
// after; a 256 MiB write with fsync 0.47 s before, 0.45 s after.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// Name identifies this implementation in hypervisor.State.
const Name = "qemu"

// DefaultStartTimeout bounds Start when its ctx has no deadline: QEMU
// answers QMP well before the guest boots, even under TCG.
const DefaultStartTimeout = 30 * time.Second

// connectRetry is the pause between attempts to reach QMP during Start.
const connectRetry = 10 * time.Millisecond

// logTailBytes is how much of qemu.log an error quotes.
const logTailBytes = 2048

var _ hypervisor.Hypervisor = (*Hypervisor)(nil)

// Hypervisor starts and finds QEMU VMs. Its zero value is not usable: call
// New. It is safe for concurrent use.
type Hypervisor struct {
	log   *logrus.Entry
	qboot string
	// tsc overrides the host TSC probe when non-zero.
	tsc uint64
	// versionCache is where binaries' versions are cached (WithVersionCache).
	versionCache string

	mu sync.Mutex
	// sandbox caches, per QEMU binary, whether it supports -sandbox.
	sandbox map[string]bool
	// versions caches, per QEMU binary, its version.
	versions map[string]Version
	// hostTSC caches the probed host TSC rate.
	hostTSC uint64
}

// Option configures a Hypervisor.
type Option func(*Hypervisor)

// WithLogger sets the logger; the default is logrus's standard logger with
// the field hypervisor=qemu.
func WithLogger(l *logrus.Entry) Option {
	return func(h *Hypervisor) { h.log = l }
}

// WithQBoot sets the qboot firmware used to boot a PVH vmlinux on q35
// (DefaultQBoot when it exists); "" disables it, and QEMU's default BIOS
// boots the vmlinux, more slowly.
func WithQBoot(path string) Option {
	return func(h *Hypervisor) { h.qboot = path }
}

// WithTSCkHz sets the host TSC rate instead of probing it (see HostTSCkHz).
func WithTSCkHz(khz uint64) Option {
	return func(h *Hypervisor) { h.tsc = khz }
}

// WithVersionCache keeps the versions of the QEMU binaries it asks in dir
// (VersionCacheDir), for the next processes: asking costs 20-40 ms.
func WithVersionCache(dir string) Option {
	return func(h *Hypervisor) { h.versionCache = dir }
}

// New returns a QEMU Hypervisor.
func New(opts ...Option) *Hypervisor {
	h := &Hypervisor{sandbox: map[string]bool{}, versions: map[string]Version{}}
	if _, err := os.Stat(DefaultQBoot); err == nil {
		h.qboot = DefaultQBoot
	}
	for _, o := range opts {
		o(h)
	}
	if h.log == nil {
		h.log = logrus.WithField("hypervisor", Name)
	}
	return h
}

// Start boots a VM from cfg. Zero fields get defaults (DefaultBinary,
// DefaultMachine, DefaultVCPUs, DefaultMemoryMiB, and the accelerator that
// DetectAccelerator picks). QEMU starts in a session of its own, its stdout
// and stderr go to qemu.log in cfg.Dir, and Start returns once QMP answers.
// If QEMU exits first, the error quotes the end of qemu.log. Start creates
// files only in cfg.Dir.
func (h *Hypervisor) Start(ctx context.Context, cfg hypervisor.VMConfig) (hypervisor.VM, error) {
	cfg = withDefaults(cfg)
	log := h.log.WithField("vm", cfg.ID)
	if cfg.Accelerator == "" {
		var why string
		cfg.Accelerator, why = DetectAccelerator()
		log.WithField("accelerator", cfg.Accelerator).Debugf("accelerator detected: %s", why)
	}
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	if err := checkFiles(cfg); err != nil {
		return nil, err
	}
	binary, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("starting vm %q: finding qemu: %w", cfg.ID, err)
	}
	f, err := h.features(ctx, binary, cfg)
	if err != nil {
		return nil, fmt.Errorf("starting vm %q: %w", cfg.ID, err)
	}
	args, err := CommandLine(cfg, f)
	if err != nil {
		return nil, err
	}

	// Refuse a directory that a running QEMU uses: QEMU would fail on its
	// locked pid file, and cleaning up after it would remove the other
	// VM's sockets.
	pidFile := filepath.Join(cfg.Dir, PIDFileName)
	if owner, err := pidFileOwner(pidFile); err != nil {
		return nil, fmt.Errorf("starting vm %q: %w", cfg.ID, err)
	} else if owner != 0 {
		return nil, fmt.Errorf("starting vm %q: vm directory %q is in use by pid %d", cfg.ID, cfg.Dir, owner)
	}

	if _, ok := ctx.Deadline(); !ok {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, DefaultStartTimeout)
		defer stop()
	}

	logPath := filepath.Join(cfg.Dir, LogFileName)
	qlog, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("starting vm %q: %w", cfg.ID, err)
	}
	defer qlog.Close()
	if cfg.ConsoleLog != "" {
		// QEMU would create the console log world-readable; the guest's
		// console is nobody else's business. QEMU truncates it.
		c, err := os.OpenFile(cfg.ConsoleLog, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("starting vm %q: %w", cfg.ID, err)
		}
		c.Close()
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("starting vm %q: %w", cfg.ID, err)
	}
	defer devnull.Close()

	cmd := exec.Command(binary, args...)
	cmd.Env = Environ(binary)
	cmd.Stdin = devnull
	cmd.Stdout = qlog
	cmd.Stderr = qlog
	cmd.Dir = "/"
	for _, nic := range cfg.NICs {
		cmd.ExtraFiles = append(cmd.ExtraFiles, nic.Tap)
	}
	if t := cfg.Template; t != nil {
		// The state file travels as a descriptor (templateFD): QEMU's
		// seccomp filter forbids the exec: migration that would open it.
		var sf *os.File
		if t.Restore {
			sf, err = os.Open(t.StateFile)
		} else {
			sf, err = os.OpenFile(t.StateFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		}
		if err != nil {
			return nil, fmt.Errorf("starting vm %q: %w", cfg.ID, err)
		}
		defer sf.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, sf)
	}
	log.WithField("args", strings.Join(args, " ")).Debug("starting qemu")
	p, err := startDetached(cmd, vmConfinement(cfg, binary, f), cfg.Cgroup)
	if err != nil {
		return nil, fmt.Errorf("starting vm %q: %w", cfg.ID, err)
	}

	vm := &VM{
		dir:   filepath.Clean(cfg.Dir),
		proc:  p,
		dial:  socketDialer(filepath.Join(cfg.Dir, QMPSocketName)),
		files: ownedFiles(args, cfg.Dir),
		log:   log.WithField("pid", p.pid),
	}
	if cfg.Template != nil && !cfg.Template.Restore {
		vm.saveFD = templateFD(cfg)
	}
	vm.version = f.Version
	err = vm.awaitQMP(ctx)
	if err == nil && cfg.Template != nil && cfg.Template.Restore {
		err = vm.restore(ctx, templateFD(cfg))
	}
	if err != nil {
		if !p.exitedNow() {
			_ = p.kill()
			kctx, cancel := context.WithTimeout(context.Background(), killWait)
			_ = p.wait(kctx)
			cancel()
		}
		// Another QEMU may have taken the directory meanwhile.
		if owner, _ := pidFileOwner(pidFile); owner == 0 || owner == p.pid {
			vm.removeFiles()
		}
		return nil, fmt.Errorf("starting vm %q: %w%s", cfg.ID, err, logTail(logPath))
	}
	// QEMU creates its sockets with the umask's mode (0755 under 022):
	// only the owner may connect.
	if err := restrictSockets(vm.files); err != nil {
		_ = p.kill()
		kctx, cancel := context.WithTimeout(context.Background(), killWait)
		_ = p.wait(kctx)
		cancel()
		vm.removeFiles()
		return nil, fmt.Errorf("starting vm %q: %w", cfg.ID, err)
	}
	// landlock 0: the kernel has none, and QEMU's host file access is
	// bounded by its capabilities only.
	vm.log.WithField("landlock", p.landlockABI).Debug("qemu started")
	return vm, nil
}

// vmConfinement is what QEMU may reach of the host for cfg: the common
// read-only paths, the binary, kernel, initrd and firmware; read-write, the
// VM's directory (sockets, pid file, logs), the shared directories and
// the console log.
func vmConfinement(cfg hypervisor.VMConfig, binary string, f Features) confinement {
	c := confinement{
		readOnly:  append(append([]string(nil), hostReadOnly...), binary, cfg.Kernel),
		readWrite: append([]string{cfg.Dir}, hostReadWrite...),
		mountNS:   cfg.MountNamespace,
	}
	for _, p := range []string{cfg.Initrd, f.QBoot, f.DataDir, moduleDir(binary)} {
		if p != "" {
			c.readOnly = append(c.readOnly, p)
		}
	}
	if cfg.ConsoleLog != "" {
		c.readWrite = append(c.readWrite, cfg.ConsoleLog)
	}
	if t := cfg.Template; t != nil {
		// A clone reads its template's memory (QEMU 8.2 and later open
		// it read-only); QEMU 7.2 opens it read-write even for the
		// private mapping of a clone (its readonly=on would make the RAM
		// a ROM). The state file is passed as a descriptor.
		if t.Restore && f.Version.ReadOnlyTemplates() {
			c.readOnly = append(c.readOnly, t.MemoryFile)
		} else {
			c.readWrite = append(c.readWrite, t.MemoryFile)
		}
	}
	for _, sd := range cfg.SharedDirs {
		if sd.Socket != "" {
			c.readWrite = append(c.readWrite, sd.Socket)
			continue
		}
		if sd.ReadOnly {
			c.readOnly = append(c.readOnly, sd.HostPath)
		} else {
			c.readWrite = append(c.readWrite, sd.HostPath)
		}
	}
	return c
}

// restrictSockets makes the unix sockets among files mode 0600.
func restrictSockets(files []string) error {
	for _, f := range files {
		fi, err := os.Lstat(f)
		if err != nil || fi.Mode()&os.ModeSocket == 0 {
			continue
		}
		if err := os.Chmod(f, 0o600); err != nil {
			return fmt.Errorf("restricting socket %s: %w", f, err)
		}
	}
	return nil
}

// features gathers the facts CommandLine needs beyond cfg, probing the host
// and the binary once.
func (h *Hypervisor) features(ctx context.Context, binary string, cfg hypervisor.VMConfig) (Features, error) {
	elf, err := isELF(cfg.Kernel)
	if err != nil {
		return Features{}, fmt.Errorf("inspecting kernel: %w", err)
	}
	f := Features{KernelELF: elf, QBoot: h.qboot, TSCkHz: h.tsc, DataDir: DataDir(binary)}
	if f.DataDir != "" {
		// A QEMU unpacked beside the system's boots with its own firmware.
		if q := filepath.Join(f.DataDir, filepath.Base(DefaultQBoot)); fileExists(q) {
			f.QBoot = q
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	version, ok := h.versions[binary]
	if !ok {
		if version, err = BinaryVersion(ctx, binary, h.versionCache); err != nil {
			return Features{}, err
		}
		h.versions[binary] = version
	}
	f.Version = version
	sandbox, ok := h.sandbox[binary]
	if !ok {
		if sandbox, err = supportsSandbox(ctx, binary); err != nil {
			return Features{}, err
		}
		h.sandbox[binary] = sandbox
	}
	f.Sandbox = sandbox
	if f.TSCkHz == 0 && cfg.Machine == MachineMicroVM && cfg.Accelerator == hypervisor.TCG {
		if h.hostTSC == 0 {
			khz, from, err := HostTSCkHz()
			if err != nil {
				return Features{}, err
			}
			h.log.WithField("tsc_khz", khz).Debugf("host tsc rate from %s", from)
			h.hostTSC = khz
		}
		f.TSCkHz = h.hostTSC
	}
	return f, nil
}

// Attach finds the VM that st describes. The process must still be the
// QEMU started for st.Dir (its command line names the pid file there);
// otherwise the error wraps hypervisor.ErrNotRunning.
func (h *Hypervisor) Attach(ctx context.Context, st hypervisor.State) (hypervisor.VM, error) {
	if st.Hypervisor != Name {
		return nil, fmt.Errorf("attaching vm in %q: state is for hypervisor %q, not %q", st.Dir, st.Hypervisor, Name)
	}
	if st.PID <= 0 || !filepath.IsAbs(st.Dir) {
		return nil, fmt.Errorf("attaching vm: invalid state (pid %d, dir %q)", st.PID, st.Dir)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("attaching vm in %q: %w", st.Dir, err)
	}
	p, err := findProcess(st.PID)
	if err != nil {
		return nil, fmt.Errorf("attaching vm in %q: pid %d: %w (%v)", st.Dir, st.PID, hypervisor.ErrNotRunning, err)
	}
	// Check the identity after taking the pidfd: if the pid is the right
	// QEMU now, the pidfd refers to it.
	args, err := procCmdline(st.PID)
	if err != nil || !isQEMUFor(args, st.Dir) {
		return nil, fmt.Errorf("attaching vm in %q: pid %d is not its qemu: %w", st.Dir, st.PID, hypervisor.ErrNotRunning)
	}
	return &VM{
		dir:   filepath.Clean(st.Dir),
		proc:  p,
		dial:  socketDialer(filepath.Join(st.Dir, QMPSocketName)),
		files: ownedFiles(args[1:], st.Dir),
		log:   h.log.WithField("pid", st.PID),
	}, nil
}

// isQEMUFor says whether args (a command line) is that of a QEMU started by
// Start for dir: it names dir's pid file.
func isQEMUFor(args []string, dir string) bool {
	want := filepath.Join(dir, PIDFileName)
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-pidfile" && args[i+1] == want {
			return true
		}
	}
	return false
}

// ownedFiles lists the files that QEMU creates from its arguments and that
// stay behind when it is killed: the pid file and the unix sockets it serves
// (QMP, agent). Only files inside dir are listed.
func ownedFiles(args []string, dir string) []string {
	var files []string
	add := func(p string) {
		if p != "" && checkInDir("file", p, dir) == nil {
			files = append(files, p)
		}
	}
	for i := 0; i+1 < len(args); i++ {
		v := args[i+1]
		switch args[i] {
		case "-pidfile":
			add(v)
		case "-qmp":
			if rest, ok := strings.CutPrefix(v, "unix:"); ok {
				add(splitOptions(rest)[0])
			}
		case "-chardev":
			opts := splitOptions(v)
			if opts[0] != "socket" {
				continue
			}
			for _, o := range opts[1:] {
				if p, ok := strings.CutPrefix(o, "path="); ok {
					add(p)
				}
			}
		}
	}
	return files
}

// logTail returns the end of the log at path, as " (qemu.log: ...)" to be
// appended to an error, or "" when the log is empty or unreadable.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - logTailBytes
	if off < 0 {
		off = 0
	}
	buf := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(buf, off)
	tail := strings.TrimSpace(string(buf[:n]))
	if tail == "" {
		return ""
	}
	return fmt.Sprintf(" (%s: %s)", LogFileName, tail)
}

// errExited reports a QEMU that exited while Start waited for it.
var errExited = errors.New("qemu exited during start")

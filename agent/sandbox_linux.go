package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
)

// DefaultSharedMountPath is where the sandbox's shared directory is mounted
// when CreateSandbox names no path.
const DefaultSharedMountPath = "/run/cocoon/shared"

// shareMountOptions are the 9p options of the shared directory. msize 512000
// lets a read or write move ~500 KB per request (9p reads at ~700 MiB/s
// with it under TCG). cache=mmap keeps no page cache for regular I/O, so
// the host's changes to the share (a volume written on the host, docker cp)
// are seen at once, and still lets programs mmap files, which cache=none
// refuses (and binaries are mapped when they run).
const shareMountOptions = "trans=virtio,version=9p2000.L,msize=512000,cache=mmap"

// GuestOps are the system calls CreateSandbox and SetGuestTime make; tests
// replace them. Zero fields are the real calls.
type GuestOps struct {
	Mount       func(source, target, fstype string, flags uintptr, data string) error
	Sethostname func(name string) error
	SetClock    func(t time.Time) error
	// SetReadahead sets the read-ahead of the file system mounted at path.
	SetReadahead func(path string, kb int) error
	// Reseed mixes entropy into the kernel's random pool and reseeds its
	// CRNG from it at once.
	Reseed func(entropy []byte) error
}

func (o *GuestOps) setDefaults() {
	if o.Mount == nil {
		o.Mount = unix.Mount
	}
	if o.Sethostname == nil {
		o.Sethostname = func(name string) error { return unix.Sethostname([]byte(name)) }
	}
	if o.SetReadahead == nil {
		o.SetReadahead = setReadahead
	}
	if o.Reseed == nil {
		o.Reseed = reseed
	}
	if o.SetClock == nil {
		o.SetClock = func(t time.Time) error {
			ts := unix.NsecToTimespec(t.UnixNano())
			return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
		}
	}
}

// virtiofsMountOptions are the options of a virtio-fs share: none. The
// cache policy is the host daemon's (virtiofsd -o cache=...), and the
// guest's page cache follows it.
const virtiofsMountOptions = ""

// mountShare mounts the share tag at path with fstype (api.SharedMount9p,
// the default when empty, or api.SharedMountVirtioFS), unless something is
// already mounted there (CreateSandbox may be retried).
func (s *Service) mountShare(tag, path, fstype string) error {
	opts := shareMountOptions
	switch fstype {
	case "", api.SharedMount9p:
		fstype = api.SharedMount9p
	case api.SharedMountVirtioFS:
		opts = virtiofsMountOptions
	default:
		return fmt.Errorf("%w: shared mount type %q (want %q or %q)", errInvalid, fstype, api.SharedMount9p, api.SharedMountVirtioFS)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("mounting the shared directory: %w", err)
	}
	if mounted, err := isMountPoint(path); err == nil && mounted {
		s.cfg.Log.WithField("path", path).Info("shared directory already mounted")
		return nil
	}
	if err := s.cfg.Guest.Mount(tag, path, fstype, 0, opts); err != nil {
		return fmt.Errorf("mounting the shared directory %q (%s) on %s: %w", tag, fstype, path, err)
	}
	if fstype == api.SharedMountVirtioFS {
		// Best effort: reads are only slower without it.
		if err := s.cfg.Guest.SetReadahead(path, virtiofsReadaheadKB); err != nil {
			s.cfg.Log.WithError(err).Warn("setting the share's read-ahead")
		}
	}
	return nil
}

// virtiofsReadaheadKB is the read-ahead of a virtio-fs share. The kernel's
// default, 128 KiB, is also the most FUSE asks for per read-ahead request;
// each request is a round trip to virtiofsd, and under TCG a 64 MiB file
// then read at ~400 MiB/s. virtiofsd takes up to 1 MiB per request.
const virtiofsReadaheadKB = 1024

// setReadahead writes the read-ahead of the backing device (bdi) of the
// file system at path: /sys/class/bdi/MAJOR:MINOR/read_ahead_kb. FUSE
// submounts share their parent's bdi.
func setReadahead(path string, kb int) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("setting read-ahead of %s: %w", path, err)
	}
	f := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(f, []byte(fmt.Sprint(kb)), 0o644); err != nil {
		return fmt.Errorf("setting read-ahead of %s: %w", path, err)
	}
	return nil
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})?$`)

func checkHostname(name string) error {
	if !hostnameRE.MatchString(name) {
		return fmt.Errorf("%w: hostname %q", errInvalid, name)
	}
	return nil
}

// writeResolvConf writes the guest's resolv.conf from dns lines
// ("nameserver 10.0.0.1", "search example.com", "options ndots:2").
func writeResolvConf(etcDir string, lines []string) error {
	var b strings.Builder
	for _, l := range lines {
		if strings.ContainsAny(l, "\n\r\x00") {
			return fmt.Errorf("%w: dns line %q holds a line break", errInvalid, l)
		}
		b.WriteString(strings.TrimSpace(l))
		b.WriteByte('\n')
	}
	if err := os.MkdirAll(etcDir, 0o755); err != nil {
		return fmt.Errorf("writing resolv.conf: %w", err)
	}
	path := filepath.Join(etcDir, "resolv.conf")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing resolv.conf: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing resolv.conf: %w", err)
	}
	return nil
}

var sysctlRE = regexp.MustCompile(`^[A-Za-z0-9_-]+([./][A-Za-z0-9_-]+)*$`)

// sysctlPath returns the /proc/sys file of a sysctl name: "net.ipv4.ip_forward"
// or "net/ipv4/ip_forward".
func sysctlPath(procSys, name string) (string, error) {
	if !sysctlRE.MatchString(name) {
		return "", fmt.Errorf("%w: sysctl name %q", errInvalid, name)
	}
	return filepath.Join(procSys, strings.ReplaceAll(name, ".", "/")), nil
}

func writeSysctl(procSys, name, value string) error {
	path, err := sysctlPath(procSys, name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: sysctl %s does not exist in the guest kernel", errInvalid, name)
	}
	if err == nil {
		_, err = f.WriteString(value)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("setting sysctl %s=%q: %w", name, value, err)
	}
	return nil
}

// reseed credits entropy to the kernel's input pool (RNDADDENTROPY on
// /dev/urandom) and forces the CRNG to reseed from it now
// (RNDRESEEDCRNG): without the second call the kernel would keep
// producing the template's stream until its next scheduled reseed.
func reseed(entropy []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("reseeding the guest's crng: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	req := make([]byte, 8+len(entropy))
	binary.NativeEndian.PutUint32(req[0:4], uint32(8*len(entropy)))
	binary.NativeEndian.PutUint32(req[4:8], uint32(len(entropy)))
	copy(req[8:], entropy)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		return fmt.Errorf("reseeding the guest's crng: RNDADDENTROPY: %w", errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); errno != 0 {
		return fmt.Errorf("reseeding the guest's crng: RNDRESEEDCRNG: %w", errno)
	}
	return nil
}

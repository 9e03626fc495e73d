package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// BalloonArg makes cocoon-relay the balloon of an OOM mirror (RunBalloon).
const BalloonArg = "--oom-balloon"

// The memory cgroup files an OOM mirror uses, v1 and v2.
type memcgFiles struct {
	usage, limit, events string
	// group is v2's memory.oom.group, "" on v1.
	group string
}

var (
	memcgV1 = memcgFiles{usage: "memory.usage_in_bytes", limit: "memory.limit_in_bytes", events: "memory.oom_control"}
	memcgV2 = memcgFiles{usage: "memory.current", limit: "memory.max", events: "memory.events", group: "memory.oom.group"}
)

// balloonName is the balloon's process name (comm).
const balloonName = "cocoon-balloon"

// balloonHeadroom is how far above the cgroup's usage the mirror sets its
// limit for the balloon to reach: small, so that the balloon's pages are
// few, and above what the kernel reclaims at once.
const balloonHeadroom = 4 << 20

// MirrorOOM reports a guest OOM kill (the container's process was killed
// by the guest's OOM killer) where the host's tools look for one: the
// container's memory cgroup on the host, dir (the relay's own, open), whose
// OOM notifications containerd-shim-runc-v2 (Docker's OOMKilled) and
// conmon (CRI-O's) watch. The guest's memory is not in that cgroup, so
// nothing there is ever short of memory: MirrorOOM starts a balloon, a
// process of its own in the cgroup that the OOM killer picks first
// (oom_score_adj 1000), lowers the cgroup's limit to a little above its
// usage, lets the balloon fill it until the kernel OOM-kills the balloon,
// and puts the limit back. It returns once the cgroup's OOM kill count has
// grown, before the relay exits: the OOM is told before the exit. Nothing
// of it outlives the call: the limit is restored whatever happens.
func MirrorOOM(ctx context.Context, dir *os.File, log *logrus.Entry) error {
	files := memcgV1
	if err := unix.Faccessat(int(dir.Fd()), memcgV2.events, unix.F_OK, 0); err == nil {
		files = memcgV2
	}
	before, err := oomKills(dir, files.events)
	if err != nil {
		return err
	}
	limit, err := readCgroupFile(dir, files.limit)
	if err != nil {
		return err
	}
	if files.group != "" {
		// Were the cgroup one OOM group, the kernel would kill the relay
		// with the balloon.
		if group, err := readCgroupFile(dir, files.group); err == nil && group == "1" {
			if err := writeCgroupFile(dir, files.group, "0"); err != nil {
				return err
			}
			defer restoreCgroupFile(dir, files.group, group, log)
		}
	}
	balloon, err := startBalloon()
	if err != nil {
		return err
	}
	defer balloon.stop()
	usage, err := readCgroupFile(dir, files.usage)
	if err != nil {
		return err
	}
	n, err := strconv.ParseInt(usage, 10, 64)
	if err != nil {
		return fmt.Errorf("mirroring the oom kill: %s: %q: %w", files.usage, usage, err)
	}
	if err := writeCgroupFile(dir, files.limit, strconv.FormatInt(n+balloonHeadroom, 10)); err != nil {
		return err
	}
	defer restoreCgroupFile(dir, files.limit, limit, log)
	if err := balloon.fill(ctx); err != nil {
		return err
	}
	after, err := oomKills(dir, files.events)
	if err != nil {
		return err
	}
	if after <= before {
		return fmt.Errorf("mirroring the oom kill: the balloon ended (%s) without an oom kill in the cgroup", balloon.state)
	}
	log.WithFields(logrus.Fields{"oom_kills": after, "usage": n}).Debug("guest oom kill mirrored in the host cgroup")
	return nil
}

// balloon is a started cocoon-relay --oom-balloon.
type balloon struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	state string
}

// startBalloon starts the balloon and waits until it is ready to fill:
// the OOM killer's first pick.
func startBalloon() (*balloon, error) {
	cmd := exec.Command("/proc/self/exe", BalloonArg)
	// Its errors for the caller's; and the relay's root (the container's)
	// may have no /dev/null, which exec.Cmd opens for a nil stream.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("starting the oom balloon: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("starting the oom balloon: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the oom balloon: %w", err)
	}
	b := &balloon{cmd: cmd, in: in}
	line := make([]byte, 6)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
		b.stop()
		return nil, fmt.Errorf("starting the oom balloon: it said %q (%v); %s: %s", line, err, b.state, bytes.TrimSpace(stderr.Bytes()))
	}
	return b, nil
}

// fill lets the balloon fill the cgroup and waits for its end, which must
// be the OOM killer's SIGKILL.
func (b *balloon) fill(ctx context.Context) error {
	if _, err := b.in.Write([]byte("go\n")); err != nil {
		return fmt.Errorf("mirroring the oom kill: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	select {
	case err := <-done:
		b.cmd = nil
		b.state = fmt.Sprint(err)
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
				return nil
			}
		}
		return fmt.Errorf("mirroring the oom kill: the balloon ended by %v, not the oom killer", err)
	case <-ctx.Done():
		return fmt.Errorf("mirroring the oom kill: the balloon still runs: %w", ctx.Err())
	}
}

// stop kills and reaps the balloon unless it has ended.
func (b *balloon) stop() {
	b.in.Close()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	b.state = fmt.Sprint(b.cmd.Wait())
	b.cmd = nil
}

// RunBalloon is cocoon-relay --oom-balloon: it makes itself the OOM
// killer's first pick, says "ready", and once told to (a line on stdin)
// maps locked memory (never swapped out, always charged) until it is
// killed.
func RunBalloon() error {
	// Its name in the host's kernel log, rather than /proc/self/exe's.
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte(balloonName + "\x00")[0])), 0, 0, 0)
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0); err != nil {
		return fmt.Errorf("oom balloon: %w", err)
	}
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		return err
	}
	if _, err := os.Stdin.Read(make([]byte, 3)); err != nil {
		return err
	}
	var held [][]byte
	for {
		// Locked: never swapped out, so the cgroup must kill.
		chunk, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE|unix.MAP_LOCKED)
		if err != nil {
			// The cgroup refused a page without the OOM killer: try
			// again, the kill is coming.
			time.Sleep(time.Millisecond)
			continue
		}
		for i := 0; i < len(chunk); i += os.Getpagesize() {
			chunk[i] = 1
		}
		held = append(held, chunk)
	}
}

// oomKills reads the oom_kill count of a memory cgroup's events file
// (v1's memory.oom_control, Linux 4.13 and later; v2's memory.events).
func oomKills(dir *os.File, events string) (int64, error) {
	data, err := readCgroupFile(dir, events)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(data, "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("mirroring the oom kill: %s has no oom_kill count", events)
}

func readCgroupFile(dir *os.File, name string) (string, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("mirroring the oom kill: reading %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("mirroring the oom kill: reading %s: %w", name, err)
	}
	return string(bytes.TrimSpace(data)), nil
}

func writeCgroupFile(dir *os.File, name, value string) error {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mirroring the oom kill: writing %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if _, err := f.WriteString(value); err != nil {
		return fmt.Errorf("mirroring the oom kill: writing %s %s: %w", name, value, err)
	}
	return nil
}

// restoreCgroupFile puts back a value MirrorOOM changed; v1's unlimited
// limit reads as a large number that writes back as it is.
func restoreCgroupFile(dir *os.File, name, value string, log *logrus.Entry) {
	if err := writeCgroupFile(dir, name, value); err != nil {
		log.WithError(err).Warn("restoring the host cgroup after mirroring an oom kill")
	}
}

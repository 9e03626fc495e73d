package relay

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// mirrorEnv makes the test binary a relay that mirrors an OOM kill in the
// memory cgroup directory it names, having moved itself there.
const mirrorEnv = "COCOON_TEST_MIRROR_OOM"

func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == BalloonArg {
		if err := RunBalloon(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if dir := os.Getenv(mirrorEnv); dir != "" {
		os.Exit(mirrorIn(dir))
	}
	os.Exit(m.Run())
}

// mirrorIn joins the cgroup dir and mirrors an OOM kill there.
func mirrorIn(dir string) int {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f, err := os.Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := MirrorOOM(ctx, f, logrus.NewEntry(log)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestMirrorOOM: a relay in a memory cgroup with a 64 MiB limit mirrors a
// guest OOM kill there: the cgroup's OOM notification fires (the eventfd
// that containerd-shim-runc-v2 and conmon register on cgroup v1), its
// oom_kill count grows by one, the relay itself lives on, and the limit is
// 64 MiB again afterwards.
func TestMirrorOOM(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a memory cgroup")
	}
	root := "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(root, "memory.oom_control")); err != nil {
		t.Skipf("no cgroup v1 memory hierarchy at %s (cgroup v2 is covered by the integration suites only): %v", root, err)
	}
	dir := filepath.Join(root, fmt.Sprintf("cocoon-test-mirror-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("removing the test cgroup: %v", err)
		}
	})
	const limit = "67108864"
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(limit), 0); err != nil {
		t.Fatal(err)
	}
	efd := oomEventFD(t, dir)
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), mirrorEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the relay failed to mirror the oom kill: %v: %s", err, out)
	}
	var n [8]byte
	if _, err := unix.Read(efd, n[:]); err != nil || binary.LittleEndian.Uint64(n[:]) == 0 {
		t.Errorf("no oom notification on the cgroup: %v", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if kills, err := oomKills(f, memcgV1.events); err != nil || kills != 1 {
		t.Errorf("oom_kill count %d (%v), want 1", kills, err)
	}
	if got, err := readCgroupFile(f, memcgV1.limit); err != nil || got != limit {
		t.Errorf("limit after the mirror %q (%v), want %s", got, err, limit)
	}
}

// oomEventFD registers an eventfd for the OOM notifications of a v1
// memory cgroup, as the runc shim does; reads of it do not block.
func oomEventFD(t *testing.T, dir string) int {
	t.Helper()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(efd) })
	oc, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oc.Close() })
	reg := fmt.Sprintf("%d %d", efd, oc.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
		t.Fatal(err)
	}
	return efd
}

//go:build integration

package runtime_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// hostSnapshot records what a hostile bundle or image might change on the
// host outside its bundle and volumes: all of /etc, and the entries of
// the top directories a symbolic link could aim at.
type hostSnapshot map[string]string

func snapshotHost(t *testing.T) hostSnapshot {
	t.Helper()
	s := hostSnapshot{}
	_ = filepath.WalkDir("/etc", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		s.add(p)
		return nil
	})
	for _, dir := range []string{"/", "/tmp", "/var/tmp", "/root", "/run", "/usr/local/bin"} {
		s.add(dir)
		entries, _ := os.ReadDir(dir)
		for _, en := range entries {
			s.add(filepath.Join(dir, en.Name()))
		}
	}
	return s
}

func (s hostSnapshot) add(p string) {
	fi, err := os.Lstat(p)
	if err != nil {
		return
	}
	v := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(p)
		v += " -> " + target
	}
	if fi.IsDir() {
		v = fi.Mode().String() // a directory's mtime moves with others' files
	}
	s[p] = v
}

// ignoredChanges are host paths that change on their own or by design
// while a test runs: other processes' temporary files and cocoon's own
// state (its sandboxes live under /run/cocoon, removed at the end).
func ignoredChange(p string) bool {
	return strings.HasPrefix(p, "/tmp/") || strings.HasPrefix(p, "/run/") && !strings.HasPrefix(p, "/run/cocoon-hostile")
}

// diff lists what changed from s to now, except ignoredChange.
func (s hostSnapshot) diff(now hostSnapshot) []string {
	var out []string
	for p, v := range s {
		if ignoredChange(p) {
			continue
		}
		if w, ok := now[p]; !ok {
			out = append(out, "removed "+p)
		} else if w != v {
			out = append(out, fmt.Sprintf("changed %s: %s -> %s", p, v, w))
		}
	}
	for p := range now {
		if _, ok := s[p]; !ok && !ignoredChange(p) {
			out = append(out, "created "+p)
		}
	}
	return out
}

// mountCount is how many mounts this process sees.
func mountCount(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// TestHostileBundles: what runc refuses is refused before anything boots,
// with exit 1 and one line, and leaves nothing: no state, no sandbox, no
// process, no mount, nothing changed on the host.
func TestHostileBundles(t *testing.T) {
	linkToSlash := writeBundle(t, func() *specs.Spec { s := baseSpec(t, "true"); s.Root.Path = "rootfs"; return s }())
	if err := os.Symlink("/", filepath.Join(linkToSlash, "rootfs")); err != nil {
		t.Fatal(err)
	}
	linkUp := writeBundle(t, func() *specs.Spec { s := baseSpec(t, "true"); s.Root.Path = "rootfs"; return s }())
	if err := os.Symlink(strings.Repeat("../", 20), filepath.Join(linkUp, "rootfs")); err != nil {
		t.Fatal(err)
	}
	absLink := filepath.Join(t.TempDir(), "rootfs-link")
	if err := os.Symlink(e.rootfs, absLink); err != nil {
		t.Fatal(err)
	}
	rootSlash := baseSpec(t, "cat", "/etc/shadow")
	rootSlash.Root.Path = "/"
	rootDotDot := baseSpec(t, "true")
	rootDotDot.Root.Path = strings.Repeat("../", 20)
	// Valid JSON: an annotation of 100 MB.
	hugeSpec := baseSpec(t, "true")
	hugeSpec.Annotations = map[string]string{"pad": strings.Repeat("x", 100<<20)}
	huge := writeBundle(t, hugeSpec)

	for _, tc := range []struct {
		name, bundle, want string
	}{
		{"RootfsLinkToSlash", linkToSlash, "invalid rootfs"},
		{"RootfsLinkUp", linkUp, "invalid rootfs"},
		{"RootfsAbsoluteLink", writeBundle(t, func() *specs.Spec { s := baseSpec(t, "true"); s.Root.Path = absLink; return s }()), "invalid rootfs"},
		{"RootSlash", writeBundle(t, rootSlash), "the host's root directory"},
		{"RootDotDot", writeBundle(t, rootDotDot), "the host's root directory"},
		{"ConfigOf100MB", huge, "config.json is too large: 1048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, mounts := snapshotHost(t), mountCount(t)
			start := time.Now()
			r := rt(t, "create", "--bundle", tc.bundle, "hostile")
			took := time.Since(start)
			if r.code == 0 {
				forceDelete(t, "hostile")
			}
			msg := strings.TrimSpace(r.stderr)
			if r.code != 1 || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("got %v; want exit 1 and one line with %q", r, tc.want)
			}
			t.Logf("refused in %.2fs: %s", took.Seconds(), msg)
			if took > 5*time.Second {
				t.Errorf("took %v: refused after booting?", took)
			}
			if entries, _ := os.ReadDir(e.root); len(entries) != 0 {
				t.Errorf("left in --root: %v", entries)
			}
			if _, err := os.Stat(sandboxRoot()); err == nil {
				t.Errorf("left %s", sandboxRoot())
			}
			if ps := processesOf(sandboxRoot()); len(ps) > 0 {
				t.Errorf("left processes: %v", ps)
			}
			if n := mountCount(t); n != mounts {
				t.Errorf("%d mounts before, %d after", mounts, n)
			}
			if d := before.diff(snapshotHost(t)); len(d) > 0 {
				t.Errorf("host changed: %v", d)
			}
		})
	}
}

// vmOf returns the directory and QEMU pid of the suite's only sandbox.
func vmOf(t *testing.T) (dir string, pid int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(sandboxRoot(), "*", "qemu.pid"))
	if len(files) != 1 {
		t.Fatalf("qemu pid files: %v, want one", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("%s: %q", files[0], data)
	}
	return filepath.Dir(files[0]), pid
}

// inVMM is path as QEMU pid sees it, in its mount namespace, which holds
// the share's mounts (the host's has none of them).
func inVMM(pid int, path string) string {
	return fmt.Sprintf("/proc/%d/root%s", pid, path)
}

// procStatus returns the fields of /proc/<pid>/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			st[k] = strings.TrimSpace(v)
		}
	}
	return st
}

// capNames are capabilities(7)'s names by number, as setpriv takes them.
var capNames = []string{"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
	"setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock",
	"ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot",
	"sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control",
	"setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon",
	"bpf", "checkpoint_restore"}

// asVMM runs a shell script with the uid and capabilities (effective,
// permitted, bounding) of the process whose status is st: what QEMU could
// do on the host if the guest took it over.
func asVMM(t *testing.T, st map[string]string, script string, args ...string) (string, error) {
	t.Helper()
	eff, err := strconv.ParseUint(st["CapEff"], 16, 64)
	if err != nil {
		t.Fatalf("CapEff %q: %v", st["CapEff"], err)
	}
	set := "-all"
	for i, name := range capNames {
		if eff&(1<<uint(i)) != 0 {
			set += ",+" + name
		}
	}
	uid := strings.Fields(st["Uid"])[1]
	gid := strings.Fields(st["Gid"])[1]
	// In QEMU's mount namespace: the share's mounts are there alone.
	cmd := exec.Command("nsenter", append([]string{"--mount=/proc/" + st["Pid"] + "/ns/mnt", "--",
		"setpriv", "--reuid", uid, "--regid", gid, "--clear-groups",
		"--inh-caps", "-all", "--bounding-set", set, "--", "/bin/sh", "-c", script, "sh"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestHostileVMMPrivileges: QEMU runs without root's powers (no
// CAP_SYS_ADMIN and the like, bounding set included, no_new_privs,
// seccomp), its sockets are 0600, and the share it serves holds a
// read-only root file system read-only on the host: with QEMU's
// credentials, writing it or remounting it fails, while a writable volume
// next to it takes the write.
func TestHostileVMMPrivileges(t *testing.T) {
	volume := t.TempDir()
	s := baseSpec(t, "sh", "-c", "while :; do sleep 1; done")
	s.Root.Readonly = true
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: volume, Options: []string{"rbind", "rw"}})
	volIndex := len(s.Mounts) - 1
	bundle := writeBundle(t, s)
	id := "hostile-vmm"
	mustRT(t, "create", "--bundle", bundle, id)
	defer forceDelete(t, id)

	dir, pid := vmOf(t)
	if cl := cmdline(pid); !strings.Contains(cl, "qemu-system") {
		t.Fatalf("pid %d is %q", pid, cl)
	}
	st := procStatus(t, pid)
	t.Logf("qemu %d: Uid %s CapEff %s CapBnd %s NoNewPrivs %s Seccomp %s", pid, st["Uid"], st["CapEff"], st["CapBnd"], st["NoNewPrivs"], st["Seccomp"])
	eff, err := strconv.ParseUint(st["CapEff"], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	bnd, _ := strconv.ParseUint(st["CapBnd"], 16, 64)
	for _, c := range []int{unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE, unix.CAP_SYS_MODULE, unix.CAP_SYS_RAWIO, unix.CAP_MKNOD,
		unix.CAP_SYS_CHROOT, unix.CAP_NET_ADMIN, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_KILL, unix.CAP_SETPCAP, unix.CAP_BPF} {
		if eff&(1<<uint(c)) != 0 || bnd&(1<<uint(c)) != 0 {
			t.Errorf("qemu has CAP_%s (CapEff %s, CapBnd %s)", strings.ToUpper(capNames[c]), st["CapEff"], st["CapBnd"])
		}
	}
	if st["CapInh"] != "0000000000000000" || st["CapAmb"] != "0000000000000000" {
		t.Errorf("qemu CapInh %s CapAmb %s, want none", st["CapInh"], st["CapAmb"])
	}
	if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
		t.Errorf("qemu NoNewPrivs %s Seccomp %s, want 1 and 2", st["NoNewPrivs"], st["Seccomp"])
	}

	for _, name := range []string{"agent.sock", "qmp.sock"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want a socket of mode 0600", name, fi.Mode())
		}
	}

	// QEMU itself, asked over QMP to open host files: /etc/shadow (to read)
	// is out of its reach, a file in its own directory is not.
	inside := filepath.Join(dir, "qmp-probe")
	if err := os.WriteFile(inside, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(inside)
	for _, tc := range []struct {
		file string
		ok   bool
	}{{"/etc/shadow", false}, {inside, true}} {
		resp := qmp(t, filepath.Join(dir, "qmp.sock"),
			fmt.Sprintf(`{"execute": "blockdev-add", "arguments": {"driver": "file", "node-name": "probe", "filename": %q, "read-only": true}}`, tc.file),
			`{"execute": "blockdev-del", "arguments": {"node-name": "probe"}}`)
		t.Logf("qemu opening %s: %s", tc.file, strings.TrimSpace(resp[0]))
		if ok := !strings.Contains(resp[0], `"error"`); ok != tc.ok {
			t.Errorf("qemu opening %s: %s, want success %v", tc.file, resp[0], tc.ok)
		}
	}

	share := filepath.Join(dir, "shared", id)
	rootfs := filepath.Join(share, "rootfs")
	vol := filepath.Join(share, "mounts", strconv.Itoa(volIndex))
	if out, err := asVMM(t, st, `echo x > "$1/hostile-write"`, rootfs); err == nil || !strings.Contains(out, "Read-only file system") {
		t.Errorf("writing the read-only rootfs at %s as qemu: %v %q, want read-only file system", rootfs, err, out)
	}
	if _, err := os.Stat(filepath.Join(e.rootfs, "hostile-write")); err == nil {
		t.Error("a write as qemu reached the read-only rootfs")
		os.Remove(filepath.Join(e.rootfs, "hostile-write"))
	}
	if out, err := asVMM(t, st, `mount -o remount,bind,rw "$1"`, rootfs); err == nil {
		// The VM's end (delete below) takes the mount along.
		t.Errorf("remounting the rootfs read-write as qemu succeeded: %q", out)
	}
	// The credentials suffice where the host allows writes: the failure
	// above is the mount's doing.
	if out, err := asVMM(t, st, `echo x > "$1/vmm-write" && rm "$1/vmm-write"`, vol); err != nil {
		t.Errorf("writing the rw volume as qemu: %v %q", err, out)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(inVMM(pid, rootfs), &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Flags&(unix.ST_RDONLY|unix.ST_NODEV|unix.ST_NOSUID) != unix.ST_RDONLY|unix.ST_NODEV|unix.ST_NOSUID {
		t.Errorf("share rootfs flags %#x, want ro, nodev, nosuid", sfs.Flags)
	}
	mustRT(t, "delete", "--force", id)
}

// qmp sends commands on a new QMP connection at socket and returns each
// one's answer (events skipped).
func qmp(t *testing.T, socket string, commands ...string) []string {
	t.Helper()
	conn, err := net.DialTimeout("unix", socket, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	read := func() string {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("qmp: %v", err)
			}
			if !strings.Contains(line, `"event"`) {
				return line
			}
		}
	}
	read() // greeting
	var answers []string
	for _, c := range append([]string{`{"execute": "qmp_capabilities"}`}, commands...) {
		if _, err := conn.Write([]byte(c + "\n")); err != nil {
			t.Fatal(err)
		}
		answers = append(answers, read())
	}
	return answers[1:]
}

// TestHostileImage: an image whose symbolic links aim at the host (a
// volume's destination through a link to /etc or to ../../.., /etc/hosts
// and /etc/resolv.conf as links out of the rootfs), with a device node and
// a set-uid file, changes nothing on the host outside its bundle and its
// volumes; the share exports it nodev and nosuid, while the guest sees
// the node and the bit as they are.
func TestHostileImage(t *testing.T) {
	marker := fmt.Sprintf("/run/cocoon-hostile-%d", os.Getpid())
	hostsFile := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hostsFile, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	etcVol, upVol := t.TempDir(), t.TempDir()
	for _, tc := range []struct {
		name   string
		mounts []specs.Mount
		script string
		// landed are files the container's writes must have created in
		// its volumes (the links resolved inside its root).
		landed []string
	}{
		{
			name: "EtcLinks",
			// Docker's way: /etc/hosts is a bind of the engine's file.
			mounts: []specs.Mount{{Destination: "/etc/hosts", Type: "bind", Source: hostsFile, Options: []string{"rbind", "rw"}}},
			script: `cat /etc/hosts; echo pwned >> /etc/hosts; echo pwned > /etc/resolv.conf; echo pwned > /etc/hostile-host
ls -ln /suid /hostzero; head -c 4 /hostzero | od -An -c; echo done`,
		},
		{
			name: "VolumeThroughLinks",
			mounts: []specs.Mount{
				{Destination: "/data", Type: "bind", Source: etcVol, Options: []string{"rbind", "rw"}},
				{Destination: "/up/pwned", Type: "bind", Source: upVol, Options: []string{"rbind", "rw"}},
			},
			script: `echo pwned > /data/x; echo pwned > /up/pwned/y; ls -ln /suid /hostzero; echo done`,
			landed: []string{filepath.Join(etcVol, "x"), filepath.Join(upVol, "y")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundleDir := hostileBundle(t, marker, tc.mounts, tc.script)
			before := snapshotHost(t)
			id := "hostile-" + strings.ToLower(tc.name)
			cmd, res := command(t, cmdOpts{}, e.runtime, rtArgs("create", "--bundle", bundleDir, id)...)
			if err := cmd.Run(); err != nil {
				t.Fatalf("create: %v (%v)", err, res())
			}
			defer forceDelete(t, id)

			// The share exports the image nodev and nosuid: the host (a
			// compromised QEMU included) cannot open its device node there.
			dir, pid := vmOf(t)
			shareRoot := inVMM(pid, filepath.Join(dir, "shared", id, "rootfs"))
			var sfs unix.Statfs_t
			if err := unix.Statfs(shareRoot, &sfs); err != nil {
				t.Fatal(err)
			}
			if sfs.Flags&unix.ST_NODEV == 0 || sfs.Flags&unix.ST_NOSUID == 0 {
				t.Errorf("share rootfs flags %#x, want nodev and nosuid", sfs.Flags)
			}
			if f, err := os.Open(filepath.Join(shareRoot, "hostzero")); err == nil {
				f.Close()
				t.Error("opened the image's device node through the share")
			} else if !errors.Is(err, fs.ErrPermission) {
				t.Errorf("opening the image's device node through the share: %v, want permission denied", err)
			}

			mustRT(t, "start", id)
			waitStatus(t, id, "stopped")
			r := res()
			t.Logf("container output: %q", r.stdout)
			if !strings.Contains(r.stdout, "done") {
				t.Errorf("container did not finish: %v", r)
			}
			// The guest sees the image as it is.
			if !strings.Contains(r.stdout, "-rwsr-xr-x") || !strings.Contains(r.stdout, "crw-") || !strings.Contains(r.stdout, "1,   5") {
				t.Errorf("the guest does not see the set-uid bit or the device node: %q", r.stdout)
			}
			mustRT(t, "delete", id)

			if d := before.diff(snapshotHost(t)); len(d) > 0 {
				t.Errorf("host changed outside the bundle and volumes: %v", d)
			}
			if _, err := os.Lstat(marker); err == nil {
				os.RemoveAll(marker)
				t.Errorf("the image created %s on the host", marker)
			}
			for _, p := range tc.landed {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("volume write: %v", err)
				}
			}
		})
	}
}

// hostileBundle makes a bundle whose rootfs is busybox with links that aim
// at the host, a device node and a set-uid copy of busybox, running
// script with mounts.
func hostileBundle(t *testing.T, marker string, mounts []specs.Mount, script string) string {
	t.Helper()
	bundleDir := t.TempDir()
	rootfs := filepath.Join(bundleDir, "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"data":             "/etc",
		"up":               strings.Repeat("../", 12),
		"etc/hosts":        "/etc/shadow",
		"etc/resolv.conf":  strings.Repeat("../", 12) + marker[1:] + "/resolv.conf",
		"etc/hostile-host": marker,
	} {
		p := filepath.Join(rootfs, link)
		os.Remove(p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mknod(filepath.Join(rootfs, "hostzero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err)
	}
	busybox, err := os.ReadFile(filepath.Join(rootfs, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "suid"), busybox, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(rootfs, "suid"), 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	s := baseSpec(t, "sh", "-c", script)
	s.Root.Path = "rootfs"
	s.Mounts = append(s.Mounts, mounts...)
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundleDir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return bundleDir
}

// TestHostileVMMVirtioFS: with virtio-fs, QEMU is as confined as with 9p
// and all three sockets are 0600; a read-only volume is read-only in
// virtiofsd's own mount namespace too (its flags are set before the bind
// propagates there).
func TestHostileVMMVirtioFS(t *testing.T) {
	cfg := virtioFSConfig(t)
	volume := t.TempDir()
	s := baseSpec(t, "sh", "-c", "while :; do sleep 1; done")
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/ro", Type: "bind", Source: volume, Options: []string{"rbind", "ro"}})
	bundle := writeBundle(t, s)
	id := "hostile-virtiofs"
	if r := run(t, cmdOpts{}, e.runtime, "--config", cfg, "--root", e.root, "create", "--bundle", bundle, id); r.code != 0 {
		t.Fatalf("create: %v", r)
	}
	defer forceDelete(t, id)

	dir, pid := vmOf(t)
	st := procStatus(t, pid)
	eff, err := strconv.ParseUint(st["CapEff"], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if eff&(1<<unix.CAP_SYS_ADMIN) != 0 || st["NoNewPrivs"] != "1" {
		t.Errorf("qemu CapEff %s NoNewPrivs %s", st["CapEff"], st["NoNewPrivs"])
	}
	for _, name := range []string{"agent.sock", "qmp.sock", "virtiofsd.sock"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want a socket of mode 0600", name, fi.Mode())
		}
	}

	var sb sandboxState
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &sb); err != nil || sb.VirtiofsdPID == 0 {
		t.Fatalf("sandbox state %s: %v", data, err)
	}
	// The daemon's view: its root is the share, the volume is mount 1 of
	// the container (mount 0 is the root file system).
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", sb.VirtiofsdPID))
	if err != nil {
		t.Fatal(err)
	}
	want := "/" + id + "/mounts/" + strconv.Itoa(len(s.Mounts)-1) + " "
	found := false
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[4]+" ", want) {
			continue
		}
		found = true
		opts := "," + f[5] + ","
		if !strings.Contains(opts, ",ro,") || !strings.Contains(opts, ",nodev,") || !strings.Contains(opts, ",nosuid,") {
			t.Errorf("the read-only volume in virtiofsd's namespace: %s", l)
		}
	}
	if !found {
		t.Errorf("no mount ending in %q in virtiofsd's namespace:\n%s", want, mi)
	}
}

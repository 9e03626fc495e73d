//go:build integration

package runtime_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// suiteQEMU is the version of the suite's QEMU.
func suiteQEMU(t *testing.T) qemu.Version {
	t.Helper()
	cfg, err := config.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	bin := cfg.Hypervisor.Path
	if bin == "" {
		bin = qemu.DefaultBinary
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v, err := qemu.ParseVersion(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fileSum returns the SHA-256 of the file at path.
func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// templateOf returns the directory of the template in dir with nics NICs.
func templateOf(t *testing.T, dir string, nics int) string {
	t.Helper()
	if d := findTemplate(dir, nics); d != "" {
		return d
	}
	t.Fatalf("no template with %d nic(s) in %s", nics, dir)
	return ""
}

// findTemplate returns the directory of the template in dir with nics
// NICs, "" when there is none.
func findTemplate(dir string, nics int) string {
	for _, s := range templateStates(dir) {
		var meta struct {
			Key struct {
				NICs int `json:"nics"`
			} `json:"key"`
		}
		data, err := os.ReadFile(filepath.Join(filepath.Dir(s), "template.json"))
		if err == nil && json.Unmarshal(data, &meta) == nil && meta.Key.NICs == nics {
			return filepath.Dir(s)
		}
	}
	return ""
}

// qemuOf returns the PID of the QEMU of sandbox id.
func qemuOf(t *testing.T, id string) int {
	t.Helper()
	for _, p := range processesOf("-name " + id + " ") {
		if pid, _, ok := strings.Cut(p, ":"); ok && strings.Contains(p, "qemu-system") {
			n, _ := strconv.Atoi(pid)
			return n
		}
	}
	t.Fatalf("no QEMU for sandbox %s", id)
	return 0
}

// openFlags returns the flags (fdinfo's, octal) of the descriptor that
// process pid holds on path.
func openFlags(t *testing.T, pid int, path string) int64 {
	t.Helper()
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err != nil || target != path {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, filepath.Base(fd)))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(l, "flags:"); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	t.Fatalf("process %d holds no descriptor on %s", pid, path)
	return 0
}

// TestTemplateReadOnly: the templates are root's alone; the QEMU of each
// clone holds its template's memory file read-only (QEMU 8.2 and later;
// read-write on 7.2, which cannot otherwise map it privately as RAM), and
// after several clones have written most of their RAM the template's
// bytes are unchanged.
func TestTemplateReadOnly(t *testing.T) {
	ts, conf := templateConfig(t, false)
	log := filepath.Join(t.TempDir(), "log")
	if r := trt(t, conf, log, "factory", "init"); r.code != 0 {
		t.Fatalf("factory init: %v", r)
	}
	if fi, err := os.Stat(ts.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("template directory %s: %v, %v; want mode 0700", ts.Dir, fi.Mode(), err)
	}
	for _, s := range templateStates(ts.Dir) {
		dir := filepath.Dir(s)
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("template %s: %v, %v; want mode 0700", dir, fi.Mode(), err)
		}
		for _, f := range []string{"memory", "state", "template.json"} {
			if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s/%s: %v, %v; want mode 0600", dir, f, fi.Mode(), err)
			}
		}
	}
	memory := filepath.Join(templateOf(t, ts.Dir, 0), "memory")
	before := fileSum(t, memory)
	readOnly := suiteQEMU(t).ReadOnlyTemplates()

	// Each clone writes 640 MiB of its 1 GiB: dd's buffer, filled from
	// /dev/zero, every page of it copied on write.
	const clones = 3
	var ids []string
	for i := range clones {
		id := fmt.Sprintf("tmpl-ro-%d", i)
		s := baseSpec(t, "sh", "-c", "dd if=/dev/zero of=/dev/null bs=640M count=1 2>/dev/null && echo wrote > /dev/shm/done; exec sleep 600")
		if r := trt(t, conf, log, "run", "-d", "--bundle", writeBundle(t, s), id); r.code != 0 {
			t.Fatalf("run -d %s: %v", id, r)
		}
		ids = append(ids, id)
		t.Cleanup(func() { forceDelete(t, id) })
		pid := qemuOf(t, id)
		if err := ts.Restored(pid); err != nil {
			t.Fatal(err)
		}
		flags := openFlags(t, pid, memory)
		switch access := flags & syscall.O_ACCMODE; {
		case readOnly && access != syscall.O_RDONLY:
			t.Errorf("clone %s: QEMU holds the template's memory with flags %o, want O_RDONLY", id, flags)
		case !readOnly && access != syscall.O_RDWR:
			t.Errorf("clone %s on QEMU 7.2: flags %o, want O_RDWR", id, flags)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, id := range ids {
		for {
			if r := trt(t, conf, log, "exec", id, "cat", "/dev/shm/done"); r.code == 0 && strings.TrimSpace(r.stdout) == "wrote" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("clone %s did not write its memory in time", id)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if after := fileSum(t, memory); after != before {
		t.Errorf("the template's memory changed under its clones: sha256 %s, was %s", after, before)
	}
	for _, id := range ids {
		if r := trt(t, conf, log, "delete", "--force", id); r.code != 0 {
			t.Errorf("delete %s: %v", id, r)
		}
	}
}

// readyEntry returns the directory of the pool's ready sandbox of kind
// kind, and its QEMU's PID.
func readyEntry(t *testing.T, ts *testutil.Templates, kind string) (string, int) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(ts.Dir, ".pool", "*", "pool-*", "ready"))
	for _, n := range names {
		if k, _ := os.ReadFile(n); string(k) != kind {
			continue
		}
		var st struct {
			VM struct {
				PID int `json:"pid"`
			} `json:"vm"`
		}
		data, err := os.ReadFile(filepath.Join(filepath.Dir(n), "state.json"))
		if err != nil || json.Unmarshal(data, &st) != nil || st.VM.PID <= 0 {
			t.Fatalf("the state of %s: %v", filepath.Dir(n), err)
		}
		return filepath.Dir(n), st.VM.PID
	}
	t.Fatalf("no ready sandbox of kind %s in the pool", kind)
	return "", 0
}

var notTakenLine = regexp.MustCompile(`could not be taken`)

// TestPoolFaults: with templates and the pool on, what goes wrong with a
// ready sandbox ends in a working container or one clear error, leaves
// nothing, and the pool heals itself: commands racing for one ready
// sandbox, its QEMU killed, its QEMU stopped, a refill killed halfway,
// factory destroy while a taken sandbox runs, a truncated template.
func TestPoolFaults(t *testing.T) {
	ts, conf := templateConfig(t, true)
	log := filepath.Join(t.TempDir(), "log")
	if r := trt(t, conf, log, "factory", "init"); r.code != 0 {
		t.Fatalf("factory init: %v", r)
	}
	waitPoolReady(t, ts)
	echo := func(word string) string { return writeBundle(t, baseSpec(t, "echo", word)) }

	t.Run("racing for one ready sandbox", func(t *testing.T) {
		var wg sync.WaitGroup
		logs := make([][]byte, 3)
		for i := range logs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, l := trun(t, conf, echo("race"), fmt.Sprintf("race-%d", i))
				if r.stdout != "race\n" {
					t.Errorf("run %d: %v", i, r)
				}
				logs[i] = l
			}()
		}
		wg.Wait()
		taken := 0
		for _, l := range logs {
			taken += len(takenLine.FindAll(l, -1))
		}
		if taken != 1 {
			t.Errorf("%d of 3 racing runs took the one ready sandbox, want 1", taken)
		}
		waitPoolReady(t, ts)
	})

	for _, fault := range []struct {
		name string
		sig  syscall.Signal
	}{{"QEMU of a ready sandbox killed", syscall.SIGKILL}, {"QEMU of a ready sandbox stopped", syscall.SIGSTOP}} {
		t.Run(fault.name, func(t *testing.T) {
			entry, pid := readyEntry(t, ts, "no-nic")
			if err := syscall.Kill(pid, fault.sig); err != nil {
				t.Fatal(err)
			}
			defer syscall.Kill(pid, syscall.SIGKILL) // never left stopped
			start := time.Now()
			r, l := trun(t, conf, echo("after"), "fault-"+strconv.Itoa(int(fault.sig)))
			t.Logf("run after the fault: %.2fs", time.Since(start).Seconds())
			if r.stdout != "after\n" {
				t.Fatalf("run: %v", r)
			}
			if !notTakenLine.Match(l) || takenLine.Match(l) {
				t.Errorf("the bad ready sandbox was not found and passed over:\n%s", l)
			}
			if _, err := os.Stat(entry); !os.IsNotExist(err) {
				t.Errorf("the bad ready sandbox %s is left (%v)", entry, err)
			}
			// The run found the pool short: a refill heals it.
			waitPoolReady(t, ts)
		})
	}

	t.Run("refill killed halfway", func(t *testing.T) {
		// A taken sandbox leaves the pool short: its refill starts, and
		// is killed while it makes the replacement (its half made
		// sandbox has a state, no ready file). Tried again should the
		// refill be done before it is caught.
		var half string
		for attempt := 0; half == "" && attempt < 3; attempt++ {
			if r, _ := trun(t, conf, echo("take"), fmt.Sprintf("take-for-refill-%d", attempt)); r.stdout != "take\n" {
				t.Fatalf("run: %v", r)
			}
			deadline := time.Now().Add(time.Minute)
			for half == "" && time.Now().Before(deadline) && len(refillProcesses()) > 0 || half == "" && time.Since(deadline.Add(-time.Minute)) < time.Second {
				entries, _ := filepath.Glob(filepath.Join(ts.Dir, ".pool", "*", "pool-*"))
				for _, en := range entries {
					_, rerr := os.Stat(filepath.Join(en, "ready"))
					_, serr := os.Stat(filepath.Join(en, "state.json"))
					if os.IsNotExist(rerr) && serr == nil {
						for _, p := range refillProcesses() {
							_ = syscall.Kill(p, syscall.SIGKILL)
						}
						half = en
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			if half == "" {
				waitPoolReady(t, ts)
			}
		}
		if half == "" {
			t.Fatal("no refill was caught making a sandbox in 3 tries")
		}
		// The next refill (a factory fill here) sweeps what it left.
		if r := trt(t, conf, log, "factory", "fill"); r.code != 0 {
			t.Fatalf("factory fill: %v", r)
		}
		if _, err := os.Stat(half); !os.IsNotExist(err) {
			t.Errorf("the sandbox a killed refill left half made is still there (%v)", err)
		}
		waitPoolReady(t, ts)
		if ps := processesOf(half); len(ps) > 0 {
			t.Errorf("processes of the half made sandbox left: %v", ps)
		}
	})

	t.Run("factory destroy with a taken sandbox running", func(t *testing.T) {
		id := "pool-survivor"
		if r := trt(t, conf, log, "run", "-d", "--bundle", writeBundle(t, baseSpec(t, "sleep", "600")), id); r.code != 0 {
			t.Fatalf("run -d: %v", r)
		}
		defer forceDelete(t, id)
		if r := trt(t, conf, log, "factory", "destroy"); r.code != 0 {
			t.Fatalf("factory destroy: %v", r)
		}
		if r := trt(t, conf, log, "exec", id, "echo", "alive"); r.code != 0 || r.stdout != "alive\n" {
			t.Errorf("exec in a taken sandbox after factory destroy: %v", r)
		}
		if r := trt(t, conf, log, "delete", "--force", id); r.code != 0 {
			t.Fatalf("delete: %v", r)
		}
		if _, err := os.Stat(filepath.Join(ts.Dir, ".pool")); !os.IsNotExist(err) {
			t.Errorf("the destroyed pool outlived its last sandbox (%v)", err)
		}
		// factory init enables the pool again.
		if r := trt(t, conf, log, "factory", "init"); r.code != 0 {
			t.Fatalf("factory init: %v", r)
		}
		waitPoolReady(t, ts)
	})

	t.Run("truncated template", func(t *testing.T) {
		// Without the pool (ts.Config), a sandbox restores from the
		// template: truncated, it fails to, and the sandbox boots cold
		// with one warning; the template is made again.
		memory := filepath.Join(templateOf(t, ts.Dir, 0), "memory")
		if err := os.Truncate(memory, 4096); err != nil {
			t.Fatal(err)
		}
		r, l := trun(t, ts.Config, echo("cold"), "truncated")
		if r.stdout != "cold\n" {
			t.Fatalf("run: %v", r)
		}
		if n := strings.Count(string(l), "level=warning"); n != 1 || !strings.Contains(string(l), "booting it cold") || restoredLine.Match(l) {
			t.Errorf("want one warning of a cold boot, no restore:\n%s", l)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if d := findTemplate(ts.Dir, 0); d != "" && fileSize(filepath.Join(d, "memory")) > 4096 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the truncated template was not made again")
			}
			time.Sleep(100 * time.Millisecond)
		}
		waitPoolReady(t, ts)
	})
}

// refillProcesses lists the pool refills running: processes started with
// COCOON_FACTORY_REFILL in their environment.
func refillProcesses() []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !strings.Contains(string(env), "COCOON_FACTORY_REFILL=") {
			continue
		}
		if p, err := strconv.Atoi(filepath.Base(d)); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// fileSize is the size of the file at path, -1 when it is not there.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

//go:build integration

package runtime_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// templateConfig writes the suite's configuration with templates on, in a
// template directory of the test's own (with pool, a pool of one ready
// sandbox of each kind), and returns the test's templates and the
// configuration's path. The test's cleanup destroys the templates and the
// pool and checks that none is left.
func templateConfig(t *testing.T, pool bool) (*testutil.Templates, string) {
	t.Helper()
	ts, err := testutil.NewTemplates(e.runtime, e.config, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conf := ts.Config
	if pool {
		conf = ts.PoolConfig
	}
	t.Cleanup(func() {
		if r := run(t, cmdOpts{}, e.runtime, "--config", conf, "--root", e.root, "factory", "destroy"); r.code != 0 {
			t.Errorf("factory destroy: %v", r)
		}
		if _, err := os.Stat(ts.Dir); !os.IsNotExist(err) {
			t.Errorf("factory destroy left %s (%v)", ts.Dir, err)
		}
		if ps := processesOf(ts.Dir); len(ps) > 0 {
			t.Errorf("factory destroy left the pool's processes: %v", ps)
		}
	})
	return ts, conf
}

// trt runs cocoon-runtime with configuration conf, logging at debug level
// into log.
func trt(t *testing.T, conf, log string, args ...string) result {
	t.Helper()
	return run(t, cmdOpts{}, e.runtime, append([]string{"--config", conf, "--root", e.root, "--debug", "--log", log}, args...)...)
}

// trun runs container id of bundle to its end with configuration conf,
// logging at debug level, and returns its result and log; a failed run
// ends the test (after removing the container).
func trun(t *testing.T, conf, bundle, id string) (result, []byte) {
	t.Helper()
	runLog := filepath.Join(t.TempDir(), "log")
	r := trt(t, conf, runLog, "run", "--bundle", bundle, id)
	logData, _ := os.ReadFile(runLog)
	if r.code != 0 {
		forceDelete(t, id)
		t.Fatalf("run %s: %v\nlog:\n%s", id, r, logData)
	}
	return r, logData
}

// vethNS makes a network namespace holding one end of a veth pair (eth0,
// with mac and an address) for the container, the other end in a namespace
// of its own, and returns its path.
func vethNS(t *testing.T, name, mac string) string {
	t.Helper()
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	peer := name + "-p"
	for _, ns := range []string{name, peer} {
		sh("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	sh("-n", name, "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", "peer0")
	sh("-n", name, "link", "set", "peer0", "netns", peer)
	sh("-n", name, "addr", "add", "10.99.0.2/24", "dev", "eth0")
	sh("-n", peer, "link", "set", "peer0", "up")
	sh("-n", name, "link", "set", "eth0", "up")
	return "/run/netns/" + name
}

// templateBundle is a bundle in nsPath with hostname and a read-only
// volume at /vol, whose process prints 32 bytes of /dev/urandom first, then
// its hostname, its NIC's MAC and the volume's file.
func templateBundle(t *testing.T, nsPath, hostname, volume string) string {
	t.Helper()
	s := baseSpec(t, "sh", "-c", "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; hostname; cat /sys/class/net/eth0/address; cat /vol/file")
	s.Hostname = hostname
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			s.Linux.Namespaces[i].Path = nsPath
		}
	}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: volume, Options: []string{"rbind", "ro"}})
	return writeBundle(t, s)
}

var restoredLine = regexp.MustCompile(`sandbox restored from its template`)

// TestTemplateRestore: factory init makes the templates; two containers
// restored from the one with a NIC get their own hostname, MAC and volume,
// and read different random bytes right after the restore.
func TestTemplateRestore(t *testing.T) {
	ts, conf := templateConfig(t, false)
	dir := ts.Dir
	log := filepath.Join(t.TempDir(), "log")
	if r := trt(t, conf, log, "factory", "init"); r.code != 0 {
		t.Fatalf("factory init: %v", r)
	}
	r := trt(t, conf, log, "factory", "status")
	if r.code != 0 || strings.Count(r.stdout, "\tcurrent\t") != 2 {
		t.Fatalf("factory status: want two current templates: %v", r)
	}
	entries, _ := os.ReadDir(dir)
	t.Logf("templates: %d entries in %s", len(entries), dir)

	var random []string
	for i, mac := range []string{"02:42:0a:00:00:11", "02:42:0a:00:00:22"} {
		id := fmt.Sprintf("tmpl-%d", i)
		vol := t.TempDir()
		content := "volume of " + id
		if err := os.WriteFile(filepath.Join(vol, "file"), []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ns := vethNS(t, fmt.Sprintf("cocoon-tmpl-%d-%d", os.Getpid(), i), mac)
		bundle := templateBundle(t, ns, "host-"+id, vol)
		r, logData := trun(t, conf, bundle, id)
		if !restoredLine.Match(logData) {
			t.Errorf("run %s: the sandbox was not restored from a template; log:\n%s", id, logData)
		}
		if strings.Contains(string(logData), "level=warning") {
			t.Errorf("run %s: warnings:\n%s", id, logData)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 {
			t.Fatalf("run %s: output %q", id, r.stdout)
		}
		if len(lines[0]) != 64 {
			t.Errorf("run %s: random bytes %q", id, lines[0])
		}
		random = append(random, lines[0])
		if lines[1] != "host-"+id {
			t.Errorf("run %s: hostname %q, want %q", id, lines[1], "host-"+id)
		}
		if want, _ := net.ParseMAC(mac); lines[2] != want.String() {
			t.Errorf("run %s: mac %q, want %q", id, lines[2], want)
		}
		if lines[3] != content {
			t.Errorf("run %s: volume file %q, want %q", id, lines[3], content)
		}
	}
	if random[0] == random[1] {
		t.Errorf("two clones of one template read the same random bytes: %s", random[0])
	}
}

// TestTemplateCorrupt: a template whose device state is corrupt costs a
// cold boot and one warning, never the container; the broken template is
// removed, and the next sandbox makes a new one.
func TestTemplateCorrupt(t *testing.T) {
	ts, conf := templateConfig(t, false)
	dir := ts.Dir
	log := filepath.Join(t.TempDir(), "log")
	if r := trt(t, conf, log, "factory", "init"); r.code != 0 {
		t.Fatalf("factory init: %v", r)
	}
	states := templateStates(dir)
	if len(states) != 2 {
		t.Fatalf("want two template state files, found %v", states)
	}
	for _, s := range states {
		if err := os.WriteFile(s, []byte("not a migration stream"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	id := "tmpl-corrupt"
	r, logData := trun(t, conf, writeBundle(t, baseSpec(t, "echo", "cold")), id)
	if r.stdout != "cold\n" {
		t.Fatalf("run: %v", r)
	}
	if n := strings.Count(string(logData), "level=warning"); n != 1 {
		t.Errorf("want one warning, got %d:\n%s", n, logData)
	}
	if restoredLine.Match(logData) {
		t.Errorf("a corrupt template restored:\n%s", logData)
	}
	if !strings.Contains(string(logData), "booting it cold") {
		t.Errorf("the warning does not say the sandbox booted cold:\n%s", logData)
	}
	// Removed (and maybe made again already, by the refill that the cold
	// boot started): the other shape's is still the corrupt one.
	var corrupt []string
	for _, s := range templateStates(dir) {
		if b, _ := os.ReadFile(s); string(b) == "not a migration stream" {
			corrupt = append(corrupt, s)
		}
	}
	if len(corrupt) != 1 {
		t.Errorf("corrupt templates left: %v; want the other shape's alone", corrupt)
	}

	// The cold run started a refill, which makes the template again in the
	// background; the next container of that shape is restored from it.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if len(templateStates(dir)) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the template was not made again in the background; factory status: %v", trt(t, conf, log, "factory", "status"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	id = "tmpl-remade"
	r, logData = trun(t, conf, writeBundle(t, baseSpec(t, "echo", "warm")), id)
	if r.stdout != "warm\n" {
		t.Fatalf("run: %v", r)
	}
	if !restoredLine.Match(logData) {
		t.Errorf("not restored from the template made again:\n%s", logData)
	}
	if strings.Contains(string(logData), "level=warning") {
		t.Errorf("warnings:\n%s", logData)
	}
}

// templateStates lists the state files of the templates in dir, not those
// of templates being made (in directories whose names start with a dot).
func templateStates(dir string) []string {
	all, _ := filepath.Glob(filepath.Join(dir, "*", "state"))
	var states []string
	for _, s := range all {
		if !strings.HasPrefix(filepath.Base(filepath.Dir(s)), ".") {
			states = append(states, s)
		}
	}
	return states
}

var takenLine = regexp.MustCompile(`sandbox taken from the pool`)

// waitPoolReady waits until the pool is full again (the command that took
// a sandbox refills it in the background).
func waitPoolReady(t *testing.T, ts *testutil.Templates) {
	t.Helper()
	if err := ts.WaitPoolFull(90 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestTemplatePool: factory init fills the pool; a container takes its
// warmed-up sandbox (with its own hostname and volume, and random bytes
// of its own), the pool is refilled in the background, and a detached
// container from the pool answers exec and is deleted; factory destroy
// stops the ready sandbox and leaves nothing.
func TestTemplatePool(t *testing.T) {
	ts, conf := templateConfig(t, true)
	log := filepath.Join(t.TempDir(), "log")
	if r := trt(t, conf, log, "factory", "init"); r.code != 0 {
		t.Fatalf("factory init: %v", r)
	}
	waitPoolReady(t, ts)

	var random []string
	for i := 0; i < 2; i++ {
		id := fmt.Sprintf("pool-%d", i)
		vol := t.TempDir()
		content := "volume of " + id
		if err := os.WriteFile(filepath.Join(vol, "file"), []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s := baseSpec(t, "sh", "-c", "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; hostname; cat /vol/file")
		s.Hostname = "host-" + id
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}})
		r, logData := trun(t, conf, writeBundle(t, s), id)
		if !takenLine.Match(logData) {
			t.Errorf("run %s: the sandbox was not taken from the pool; log:\n%s", id, logData)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 || len(lines[0]) != 64 || lines[1] != "host-"+id || lines[2] != content {
			t.Fatalf("run %s: output %q, want 64 hex digits, host-%s, %q", id, r.stdout, id, content)
		}
		random = append(random, lines[0])
		waitPoolReady(t, ts)
	}
	if random[0] == random[1] {
		t.Errorf("two sandboxes of the pool read the same random bytes: %s", random[0])
	}

	id := "pool-detached"
	runLog := filepath.Join(t.TempDir(), "log")
	if r := trt(t, conf, runLog, "run", "-d", "--bundle", writeBundle(t, baseSpec(t, "sleep", "600")), id); r.code != 0 {
		t.Fatalf("run -d: %v", r)
	}
	if logData, _ := os.ReadFile(runLog); !takenLine.Match(logData) {
		t.Errorf("run -d: the sandbox was not taken from the pool; log:\n%s", logData)
	}
	if r := trt(t, conf, runLog, "exec", id, "hostname"); r.code != 0 || strings.TrimSpace(r.stdout) == "" {
		t.Errorf("exec in a sandbox from the pool: %v", r)
	}
	if r := trt(t, conf, runLog, "delete", "--force", id); r.code != 0 {
		t.Fatalf("delete --force: %v", r)
	}
	waitPoolReady(t, ts)

	// Docker's way: a new network namespace that a prestart hook fills
	// with a veth once the container's PID exists. The sandbox with a
	// network of its own is taken, and the guest gets the veth's MAC and
	// address.
	const mac = "02:42:0a:00:00:33"
	hook := fmt.Sprintf(`pid=$(sed 's/.*"pid":\([0-9]*\).*/\1/'); `+
		`ip link add cvp%[1]d type veth peer name eth0 address %[2]s netns /proc/$pid/ns/net && `+
		`nsenter -t $pid -n ip addr add 10.98.0.2/24 dev eth0 && nsenter -t $pid -n ip link set eth0 up`, os.Getpid()%10000, mac)
	s := baseSpec(t, "sh", "-c", "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0")
	s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", hook}}}} //nolint:staticcheck // Docker still sends it
	id = "pool-network"
	r, logData := trun(t, conf, writeBundle(t, s), id)
	if !takenLine.Match(logData) {
		t.Errorf("run with a network: the sandbox was not taken from the pool; log:\n%s", logData)
	}
	if !strings.HasPrefix(r.stdout, mac+"\n") || !strings.Contains(r.stdout, "10.98.0.2/24") {
		t.Errorf("run with a network: output %q, want MAC %s and 10.98.0.2/24", r.stdout, mac)
	}
	waitPoolReady(t, ts)
}

package kubetest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// freePort returns a TCP port of 127.0.0.1 that nothing listens on now:
// the cluster's daemons listen on ports of their own, not the well-known
// ones a node's may hold.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeServiceAccountKey writes an RSA key for kube-apiserver's service
// account tokens, which it requires even when no pod mounts one.
func writeServiceAccountKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generating the service account key: %w", err)
	}
	block := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

// newToken returns a random bearer token.
func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writeTokenFile writes kube-apiserver's static token file: one user in
// system:masters, which the kubelet and kubectl both use (authorization
// is AlwaysAllow anyway).
func writeTokenFile(path, token string) error {
	return os.WriteFile(path, []byte(token+",cocoon-test,cocoon-test,system:masters\n"), 0o600)
}

// writeKubeconfig writes a kubeconfig for the API server at server, with
// the token; the server's certificate is its own self-signed one.
func writeKubeconfig(path, server, token string) error {
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: test
  user:
    token: %s
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
`, server, token)
	return os.WriteFile(path, []byte(data), 0o600)
}

// kubeletConfig is the kubelet's KubeletConfiguration: every path under
// the cluster's directory, its ports its own, cgroupfs under a cgroup root
// of the suite's own, and what this host needs:
//   - cgroup v1 (failCgroupV1 false), no swap accounting (failSwapOn
//     false);
//   - no CAP_SYS_RESOURCE: oomScoreAdj 0, as a negative score fails (the
//     containers' scores are containerd's to clamp:
//     restrict_oom_score_adj);
//   - a host shared with other tests: no iptables chains, eviction and
//     image garbage collection thresholds it never reaches (a busy disk
//     must not evict the suite's pods nor delete its images, which no
//     registry can give back);
//   - the apiserver reaching it on 127.0.0.1 without a client
//     certificate: anonymous authentication, AlwaysAllow.
func (c *Cluster) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%s
runtimeRequestTimeout: 4m
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
failSwapOn: false
failCgroupV1: false
oomScoreAdj: 0
makeIPTablesUtilChains: false
podLogsDir: %s
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
maxPods: 20
`, c.kubeletPort, c.kubeletHealthzPort, c.Runtime.CRISocket(), c.CgroupRoot, c.path("pod-logs"))
}

// cgroupHierarchies are the host's cgroup v1 hierarchies (and the unified
// one of a hybrid host): the kubelet's cgroupfs driver makes its cgroups
// in each.
func cgroupHierarchies() []string {
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return dirs
}

// makeCgroupRoot creates the kubelet's cgroup root in every hierarchy
// (the kubelet requires it to exist), with the cpuset of the hierarchy's
// root: a new cpuset cgroup has none, and no child could run.
func makeCgroupRoot(root string) error {
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(h, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if data, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					return fmt.Errorf("setting %s of %s: %w", f, dir, err)
				}
			}
		}
	}
	return nil
}

// hugetlbHierarchy is where a node's init mounts the hugetlb controller's
// cgroup v1 hierarchy.
const hugetlbHierarchy = "/sys/fs/cgroup/hugetlb"

// MountHugetlb mounts the hugetlb controller's hierarchy on a cgroup v1
// host whose kernel has the controller but where no hierarchy of it is
// mounted (this machine's init mounts none), as systemd on a node mounts
// every controller: the kubelet gives every container a hugepage limit (0)
// for each page size of the host, CRI-O passes them to runc, and runc
// fails without the controller. Call it before the CRI runtime starts;
// the function it returns unmounts what it mounted (nothing where it
// mounted nothing), to be called once the runtime has stopped and the
// processes of its pods are reaped: a zombie holds its cgroups.
func MountHugetlb() (unmount func() error, err error) {
	mounted, err := mountHugetlb()
	if err != nil || !mounted {
		return func() error { return nil }, err
	}
	return unmountHugetlb, nil
}

func mountHugetlb() (bool, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &fs); err != nil || fs.Type == unix.CGROUP2_SUPER_MAGIC {
		return false, nil // cgroup v2: hugetlb is a controller of the one hierarchy
	}
	if _, err := os.Stat(hugetlbHierarchy); err == nil {
		return false, nil
	}
	if _, _, err := hugetlbState(); err != nil {
		return false, nil // not in the kernel
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false, err
	}
	if regexp.MustCompile(`(?m)^\S+ \S+ cgroup \S*\bhugetlb\b`).Match(mounts) {
		return false, nil // mounted elsewhere
	}
	if err := os.Mkdir(hugetlbHierarchy, 0o755); err != nil {
		return false, fmt.Errorf("mounting the hugetlb cgroup hierarchy: %w", err)
	}
	if err := mountHugetlbAt(); err != nil {
		_ = os.Remove(hugetlbHierarchy)
		return false, fmt.Errorf("mounting the hugetlb cgroup hierarchy: %w", err)
	}
	return true, nil
}

func mountHugetlbAt() error {
	return unix.Mount("cgroup", hugetlbHierarchy, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hugetlb")
}

// unmountHugetlb unmounts what mountHugetlb mounted, once its cgroups
// are removed, and waits for the kernel to destroy the hierarchy. A v1
// hierarchy unmounted while it still has child cgroups (removed ones the
// kernel has not released yet count) outlives its mount: every process
// then shows "hugetlb:/" in /proc/PID/cgroup, with no mount to see it
// through. So it unmounts only when the root is the hierarchy's one
// cgroup, and mounts it again to unmount it once more where it lingers.
func unmountHugetlb() error {
	defer os.Remove(hugetlbHierarchy)
	deadline := time.Now().Add(30 * time.Second)
	mounted, unmounted := true, time.Time{}
	for {
		hierarchy, cgroups, err := hugetlbState()
		if err != nil {
			return err
		}
		switch {
		case hierarchy == 0 && !mounted:
			return nil
		case !mounted && time.Since(unmounted) > 2*time.Second:
			// The kernel destroys a hierarchy shortly after its last
			// unmount; one still there was unmounted with children.
			if err := mountHugetlbAt(); err != nil {
				return fmt.Errorf("mounting the lingering hugetlb cgroup hierarchy %d again: %w", hierarchy, err)
			}
			mounted = true
		case mounted && cgroups == 1:
			if err := unix.Unmount(hugetlbHierarchy, 0); err != nil {
				return fmt.Errorf("unmounting %s: %w", hugetlbHierarchy, err)
			}
			mounted, unmounted = false, time.Now()
		}
		if time.Now().After(deadline) {
			if mounted {
				_ = unix.Unmount(hugetlbHierarchy, 0)
			}
			return fmt.Errorf("the hugetlb cgroup hierarchy %d (%d cgroups) still there 30s after the cluster stopped", hierarchy, cgroups)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hugetlbState reads the hugetlb controller's hierarchy ID (0: none) and
// its number of cgroups from /proc/cgroups; an error where the kernel has
// it not, or not enabled.
func hugetlbState() (hierarchy, cgroups int, err error) {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return 0, 0, err
	}
	m := regexp.MustCompile(`(?m)^hugetlb\s+(\d+)\s+(\d+)\s+1$`).FindSubmatch(b)
	if m == nil {
		return 0, 0, fmt.Errorf("no enabled hugetlb controller in /proc/cgroups")
	}
	hierarchy, _ = strconv.Atoi(string(m[1]))
	cgroups, _ = strconv.Atoi(string(m[2]))
	return hierarchy, cgroups, nil
}

// removeCgroupRoot removes the cgroup root's tree from every hierarchy,
// deepest first, and reports the cgroups it could not remove (a process
// still in them).
func removeCgroupRoot(root string) []string {
	var left []string
	for _, h := range cgroupHierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, root), func(path string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
				left = append(left, fmt.Sprintf("cgroup %s left (processes: %s): %v", dirs[i], strings.Fields(string(procs)), err))
			}
		}
	}
	return left
}

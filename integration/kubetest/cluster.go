// Package kubetest runs a one-node Kubernetes cluster for cocoon's kubelet
// tests: etcd, kube-apiserver and a kubelet built by `make kubernetes`,
// on a private CRI runtime with cocoon registered as the handler "cocoon"
// (containerd of containerdtest, or CRI-O of criotest), on private
// directories under a temporary directory, ports of 127.0.0.1 chosen free and a cgroup root of their
// own. There is no scheduler nor controller manager: pods name their node
// (spec.nodeName); the API server's admission needs neither (no
// ServiceAccount admission, so pods mount no token). Everything is stopped
// by PID.
package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// Version is the Kubernetes release that `make kubernetes` builds.
const Version = "1.34.2"

// NodeName is the kubelet's node (its --hostname-override). An IP address:
// it is then the node's InternalIP, which the API server dials for logs,
// exec and port-forward, and the kubelet takes it as given; as --node-ip
// it refuses a loopback address, and the suite's kubelet listens on
// 127.0.0.1 only.
const NodeName = "127.0.0.1"

// startTimeout bounds each daemon's start; the API server's first start
// (its bootstrap controllers) takes longest.
const startTimeout = 2 * time.Minute

// BinDir is where `make kubernetes` puts etcd, kube-apiserver, kubelet
// and kubectl: $COCOON_CACHE/kubernetes-<Version>/bin.
func BinDir() (string, error) {
	kubelet, err := testutil.CacheFile(filepath.Join("kubernetes-"+Version, "bin", "kubelet"), "Kubernetes "+Version, "make kubernetes")
	if err != nil {
		return "", err
	}
	return filepath.Dir(kubelet), nil
}

// Runtime is the node's CRI runtime, started and stopped by its test
// package: containerdtest's containerd or criotest's CRI-O.
type Runtime interface {
	// CRISocket is the path of its CRI socket.
	CRISocket() string
	// Restart stops it and starts it again, as a service manager does.
	Restart() error
}

// Cluster is a running one-node cluster.
type Cluster struct {
	// Dir holds everything of the cluster but containerd's.
	Dir string
	// Bin holds the Kubernetes binaries.
	Bin string
	// Runtime is the node's container runtime.
	Runtime Runtime
	// Kubeconfig is the kubeconfig of kubectl and the kubelet.
	Kubeconfig string
	// CgroupRoot is the kubelet's cgroup root (its kubepods cgroup is
	// under it), in every cgroup hierarchy.
	CgroupRoot string

	etcd, apiserver, kubelet                 *testutil.Daemon
	preexisting                              map[string]bool // of hostPaths
	etcdURL, token                           string
	apiPort, kubeletPort, kubeletHealthzPort int
}

// path is a path under the cluster's directory.
func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.Dir}, elem...)...)
}

// KubeletRoot is the kubelet's --root-dir.
func (c *Cluster) KubeletRoot() string { return c.path("kubelet") }

// Start starts etcd, the API server and the kubelet against rt (with a
// pod network), waits for the node to be
// Ready and installs the RuntimeClass "cocoon" with repo's
// packaging/kubernetes/register.sh.
func Start(ctx context.Context, rt Runtime, repo string) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cocoon-kube")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Bin: bin, Runtime: rt, Kubeconfig: filepath.Join(dir, "kubeconfig"),
		CgroupRoot: fmt.Sprintf("/cocoon-kubelet-%d", os.Getpid()), preexisting: map[string]bool{}}
	for _, p := range hostPaths {
		if _, err := os.Stat(p); err == nil {
			c.preexisting[p] = true
		}
	}
	if err := c.start(ctx, repo); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, repo string) error {
	for _, p := range []*int{&c.apiPort, &c.kubeletPort, &c.kubeletHealthzPort} {
		port, err := freePort()
		if err != nil {
			return err
		}
		*p = port
	}
	if err := c.startEtcd(); err != nil {
		return err
	}
	if err := c.startAPIServer(); err != nil {
		return err
	}
	if err := c.startKubelet(ctx); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repo, "packaging", "kubernetes", "register.sh"), "register")
	cmd.Env = append(os.Environ(), "KUBECTL="+filepath.Join(c.Bin, "kubectl")+" --kubeconfig "+c.Kubeconfig)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("packaging/kubernetes/register.sh register: %w: %s", err, out)
	}
	return nil
}

// startEtcd starts etcd on two free ports, its data in the cluster's
// directory; fsync is off, as the data is thrown away.
func (c *Cluster) startEtcd() error {
	client, err := freePort()
	if err != nil {
		return err
	}
	peer, err := freePort()
	if err != nil {
		return err
	}
	c.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	c.etcd = &testutil.Daemon{Name: "etcd", Path: filepath.Join(c.Bin, "etcd"), Log: c.path("etcd.log"), Args: []string{
		"--name", "cocoon-test", "--data-dir", c.path("etcd"),
		"--listen-client-urls", c.etcdURL, "--advertise-client-urls", c.etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "cocoon-test=" + peerURL, "--unsafe-no-fsync",
	}}
	if err := c.etcd.Start(); err != nil {
		return err
	}
	return c.etcd.Poll(startTimeout, func() error { return httpOK(c.etcdURL+"/health", "") })
}

// startAPIServer starts kube-apiserver: a static token, AlwaysAllow, its
// self-signed serving certificate, and no admission plugin that needs a
// controller (ServiceAccount) or would taint the node until a controller
// clears it (TaintNodesByCondition). RuntimeClass admission stays: it
// adds the RuntimeClass's overhead to cocoon pods.
func (c *Cluster) startAPIServer() error {
	var err error
	if c.token, err = newToken(); err != nil {
		return err
	}
	saKey := c.path("sa.key")
	if err := writeServiceAccountKey(saKey); err != nil {
		return err
	}
	if err := writeTokenFile(c.path("tokens.csv"), c.token); err != nil {
		return err
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", c.apiPort)
	if err := writeKubeconfig(c.Kubeconfig, server, c.token); err != nil {
		return err
	}
	c.apiserver = &testutil.Daemon{Name: "kube-apiserver", Path: filepath.Join(c.Bin, "kube-apiserver"), Log: c.path("kube-apiserver.log"), Args: []string{
		"--etcd-servers", c.etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", fmt.Sprint(c.apiPort),
		"--cert-dir", c.path("apiserver-pki"),
		"--token-auth-file", c.path("tokens.csv"), "--authorization-mode", "AlwaysAllow",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey, "--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.233.0.0/24",
		"--disable-admission-plugins", "ServiceAccount,TaintNodesByCondition",
		"--kubelet-preferred-address-types", "InternalIP",
		"--enable-priority-and-fairness=false", "--profiling=false",
	}}
	if err := c.apiserver.Start(); err != nil {
		return err
	}
	return c.apiserver.Poll(startTimeout, func() error { return httpOK(server+"/readyz", c.token) })
}

// startKubelet makes the kubelet's cgroup root, starts it and waits for
// its node to be Ready.
func (c *Cluster) startKubelet(ctx context.Context) error {
	if err := makeCgroupRoot(c.CgroupRoot); err != nil {
		return err
	}
	config := c.path("kubelet-config.yaml")
	if err := os.WriteFile(config, []byte(c.kubeletConfig()), 0o644); err != nil {
		return err
	}
	c.kubelet = &testutil.Daemon{Name: "kubelet", Path: filepath.Join(c.Bin, "kubelet"), Log: c.path("kubelet.log"), Args: []string{
		"--config", config, "--kubeconfig", c.Kubeconfig, "--root-dir", c.KubeletRoot(),
		"--hostname-override", NodeName, "--cert-dir", c.path("kubelet-pki"), "--v", "2",
	}}
	return c.runKubelet(ctx)
}

// runKubelet starts the kubelet's process and waits until its node is
// Ready.
func (c *Cluster) runKubelet(ctx context.Context) error {
	if err := c.kubelet.Start(); err != nil {
		return err
	}
	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", c.kubeletHealthzPort)
	if err := c.kubelet.Poll(startTimeout, func() error { return httpOK(healthz, "") }); err != nil {
		return err
	}
	return c.kubelet.Poll(startTimeout, func() error {
		out, err := c.Kubectl(ctx, "get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if out != "True" {
			return fmt.Errorf("node %s Ready is %q", NodeName, out)
		}
		return nil
	})
}

// RestartKubelet stops the kubelet (TERM, as a service manager does) and
// starts it again; pods keep running meanwhile.
func (c *Cluster) RestartKubelet(ctx context.Context) error {
	c.kubelet.Stop(30 * time.Second)
	return c.runKubelet(ctx)
}

// SaveLogs copies the logs of etcd, the API server and the kubelet into
// dir, named prefix + the daemon's name + ".log".
func (c *Cluster) SaveLogs(dir, prefix string) error {
	for _, p := range []*testutil.Daemon{c.etcd, c.apiserver, c.kubelet} {
		if p == nil {
			continue
		}
		data, err := os.ReadFile(p.Log)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, prefix+p.Name+".log"), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// KubeletLogTail returns the end of the kubelet's log.
func (c *Cluster) KubeletLogTail() string { return c.kubelet.LogTail(8000) }

// httpOK GETs url (with a bearer token unless empty; TLS unverified: the
// API server's certificate is self-signed) and fails unless it answers 200.
func httpOK(url, token string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// KubectlCommand returns kubectl with the cluster's kubeconfig.
func (c *Cluster) KubectlCommand(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, filepath.Join(c.Bin, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
}

// Kubectl runs kubectl and returns its trimmed stdout.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := c.KubectlCommand(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Stop deletes the cluster's pods (the kubelet stops their sandboxes),
// stops the kubelet, removes the pods' sandboxes that its garbage
// collector had not removed yet (crictl rmp, as it would), stops the API
// server and etcd, unmounts what the kubelet left mounted under its root
// directory (pod volumes: a leftover), removes its cgroups and the cluster's
// directory, and what the kubelet made of hostPaths that were not there
// before. It returns what it could not clean or should not have found:
// processes naming the cluster's directory, cgroups still holding
// processes, files the kubelet left under hostPaths
// but the hardwired one.
func (c *Cluster) Stop() []string {
	var left []string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if c.kubelet != nil && c.kubelet.Running() {
		if _, err := c.Kubectl(ctx, "delete", "pods", "--all", "--all-namespaces", "--wait", "--timeout", "4m"); err != nil {
			left = append(left, "deleting the pods: "+err.Error())
		}
	}
	for _, p := range []*testutil.Daemon{c.kubelet, c.apiserver, c.etcd} {
		if p != nil {
			p.Stop(30 * time.Second)
		}
	}
	if err := c.removeSandboxes(ctx); err != nil {
		left = append(left, err.Error())
	}
	for _, m := range containerdtest.MountsUnder(c.Dir) {
		// The kubelet bind-mounts its root directory on itself to make it
		// a shared mount (for mount propagation), and leaves it.
		if m != c.KubeletRoot() {
			left = append(left, "mount left: "+m)
		}
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	for _, p := range containerdtest.Processes(c.Dir) {
		left = append(left, "process left: "+p)
	}
	left = append(left, removeCgroupRoot(c.CgroupRoot)...)
	for _, p := range hostPaths {
		if !c.preexisting[p] {
			left = append(left, removeHostPath(p)...)
		}
	}
	os.RemoveAll(c.Dir)
	return left
}

// removeSandboxes removes every pod sandbox left in the runtime.
func (c *Cluster) removeSandboxes(ctx context.Context) error {
	ids, err := c.Crictl(ctx, "pods", "-q")
	if err != nil {
		return err
	}
	for _, id := range strings.Fields(ids) {
		if _, err := c.Crictl(ctx, "rmp", "-f", id); err != nil {
			return err
		}
	}
	return nil
}

// Crictl runs crictl against the node's runtime and returns its trimmed
// stdout.
func (c *Cluster) Crictl(ctx context.Context, args ...string) (string, error) {
	return containerdtest.CrictlOn(ctx, c.Runtime.CRISocket(), args...)
}

// hostPaths are where a kubelet keeps state by default. The cluster's
// configuration moves most under its directory; two no setting moves:
// the device manager's socket directory and the container log links.
var hostPaths = []string{"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/etc/kubernetes"}

// hardwired is the one file a kubelet may leave under hostPaths whatever
// its configuration says: the device manager's socket.
const hardwired = "/var/lib/kubelet/device-plugins/kubelet.sock"

// removeHostPath removes p, which the cluster's kubelet created, and
// reports the files in it but the hardwired one.
func removeHostPath(p string) []string {
	var left []string
	_ = filepath.WalkDir(p, func(path string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && path != hardwired {
			left = append(left, "the kubelet left "+path)
		}
		return nil
	})
	if err := os.RemoveAll(p); err != nil {
		left = append(left, err.Error())
	}
	return left
}

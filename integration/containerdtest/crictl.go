package containerdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// CrictlVersion is the crictl that `make crictl` builds.
const CrictlVersion = "v1.37.0"

// CrictlPath is where `make crictl` puts crictl: $COCOON_CACHE/bin
// (default /var/cache/cocoon/bin), outside the clone.
func CrictlPath() (string, error) {
	return testutil.CacheFile(filepath.Join("bin", "crictl-"+CrictlVersion), "crictl "+CrictlVersion, "make crictl")
}

// CrictlCommandOn returns crictl pointed at the CRI socket (containerd's
// or CRI-O's).
func CrictlCommandOn(ctx context.Context, crictl, socket string, args ...string) *exec.Cmd {
	ep := "unix://" + socket
	return exec.CommandContext(ctx, crictl, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "180s"}, args...)...)
}

// CrictlOn runs crictl against the CRI socket and returns its trimmed
// stdout.
func CrictlOn(ctx context.Context, socket string, args ...string) (string, error) {
	crictl, err := CrictlPath()
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := CrictlCommandOn(ctx, crictl, socket, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Crictl runs crictl against the daemon and returns its trimmed stdout.
func (d *Daemon) Crictl(ctx context.Context, args ...string) (string, error) {
	return CrictlOn(ctx, d.Socket, args...)
}

// CrictlCommand returns crictl pointed at the daemon.
func (d *Daemon) CrictlCommand(ctx context.Context, crictl string, args ...string) (*exec.Cmd, error) {
	return CrictlCommandOn(ctx, crictl, d.Socket, args...), nil
}

// PodConfig writes the configuration of a host-network pod (no CNI) whose
// containers share one PID namespace, and returns its path. It has no
// hostname, as the kubelet gives none to host-network pods (runc refuses a
// hostname without a UTS namespace of its own).
func PodConfig(dir, name string) (string, error) {
	return writeJSON(filepath.Join(dir, name+"-pod.json"), map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
		"log_directory": filepath.Join(dir, "logs"),
		"linux": map[string]any{"security_context": map[string]any{
			// network NODE (2): no CNI; pid POD (0): one PID namespace.
			"namespace_options": map[string]any{"network": 2, "pid": 0},
		}},
	})
}

// NetworkPodConfig writes the configuration of a pod with a network of
// its own (CNI: the daemon's PodNetwork), the hostname name and DNS
// settings as the kubelet gives them (PodDNS below), whose containers
// share one PID namespace, and returns its path.
func NetworkPodConfig(dir, name string) (string, error) {
	return writeJSON(filepath.Join(dir, name+"-pod.json"), map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
		"hostname":      name,
		"dns_config":    map[string]any{"servers": []string{PodDNS.Server}, "searches": []string{PodDNS.Search}, "options": []string{"ndots:5"}},
		"log_directory": filepath.Join(dir, "logs"),
		"linux": map[string]any{"security_context": map[string]any{
			// network POD (0): a namespace that CNI fills; pid POD (0).
			"namespace_options": map[string]any{"network": 0, "pid": 0},
		}},
	})
}

// PodDNS is the DNS configuration of NetworkPodConfig's pods (the
// resolver's address is in TEST-NET-1: nothing answers there).
var PodDNS = struct{ Server, Search string }{"192.0.2.53", "default.svc.cluster.test"}

// ContainerConfig writes the configuration of a container of image that
// runs cmd, and returns its path.
func ContainerConfig(dir, name, image string, cmd ...string) (string, error) {
	return writeJSON(filepath.Join(dir, name+".json"), map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": image},
		"command":  cmd,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	})
}

func writeJSON(path string, v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, data, 0o644)
}

// CRISocket is the daemon's CRI socket (kubetest.Runtime).
func (d *Daemon) CRISocket() string { return d.Socket }

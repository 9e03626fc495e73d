package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/integration/kubetest"
)

// benchKubeNetwork is the CNI network of the kubelet bench: a bridge of
// its own in the benchmarking range, apart from the kubelet suite's.
var benchKubeNetwork = &containerdtest.PodNetwork{Name: "cocoon-bench-kube", Bridge: "cocoon-bkube0", Subnet: "198.18.92.0/24"}

// kubeletPodStart times a pod's start through a real kubelet (kubetest's
// one-node cluster on a private containerd): from `kubectl create` of a
// pod of one busybox container to `kubectl wait` seeing it Running, with
// the default runtime (runc) and the RuntimeClass cocoon, interleaved.
// Both sides pay the same two kubectl starts. Deleting the pod is not
// timed.
func (b *bench) kubeletPodStart(ctx context.Context, out, bin string, runs int) (runc, cocoon []time.Duration, err error) {
	repo, err := os.Getwd()
	if err != nil {
		return nil, nil, err
	}
	d, stop, err := criDaemon(ctx, out, bin, benchKubeNetwork)
	if err != nil {
		return nil, nil, err
	}
	defer stop(&err)
	c, err := kubetest.Start(ctx, d, repo)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if left := c.Stop(); len(left) > 0 && err == nil {
			err = fmt.Errorf("after the pods: %s", strings.Join(left, "; "))
		}
	}()
	for i := 0; i < runs; i++ {
		r, err := timeKubePod(ctx, c, fmt.Sprintf("runc-%d", i), "")
		if err != nil {
			return nil, nil, err
		}
		runc = append(runc, r)
		k, err := timeKubePod(ctx, c, fmt.Sprintf("cocoon-%d", i), "cocoon")
		if err != nil {
			return nil, nil, err
		}
		cocoon = append(cocoon, k)
	}
	return runc, cocoon, nil
}

// timeKubePod creates a pod on runtimeClass ("" for the default), times
// it to Running and deletes it.
func timeKubePod(ctx context.Context, c *kubetest.Cluster, name, runtimeClass string) (time.Duration, error) {
	spec := map[string]any{
		"nodeName": kubetest.NodeName, "automountServiceAccountToken": false,
		"containers": []map[string]any{{
			"name": "c", "image": containerdtest.BusyboxImage, "imagePullPolicy": "Never",
			"command": []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"},
		}},
	}
	if runtimeClass != "" {
		spec["runtimeClassName"] = runtimeClass
	}
	data, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": "default"}, "spec": spec})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	create := c.KubectlCommand(ctx, "create", "-f", "-")
	create.Stdin = strings.NewReader(string(data))
	if out, err := create.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("kubectl create pod %s: %w: %s", name, err, out)
	}
	defer func() { _, _ = c.Kubectl(ctx, "delete", "pod", name, "--wait", "--timeout", "3m") }()
	if _, err := c.Kubectl(ctx, "wait", "--for=jsonpath={.status.phase}=Running", "pod/"+name, "--timeout", "4m"); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// kubeletRows prints the kubelet bench's rows.
func kubeletRows(runc, cocoon []time.Duration) {
	row("kubelet: kubectl create to Running, runc (s)", seconds(runc))
	row("kubelet: kubectl create to Running, cocoon (s)", seconds(cocoon))
}

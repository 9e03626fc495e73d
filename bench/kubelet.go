package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/integration/criotest"
	"github.com/cocoon-containers/cocoon/integration/kubetest"
)

// benchKubeNetwork is the CNI network of the kubelet bench: a bridge of
// its own in the benchmarking range, apart from the kubelet suite's.
var benchKubeNetwork = &containerdtest.PodNetwork{Name: "cocoon-bench-kube", Bridge: "cocoon-bkube0", Subnet: "198.18.92.0/24"}

// kubeletTimes are the kubelet bench's pod starts, runc's and cocoon's,
// on each CRI runtime.
type kubeletTimes struct {
	containerd, crio  string // their versions
	containerdRunc    []time.Duration
	containerdCocoon  []time.Duration
	crioRunc, crioOCI []time.Duration
}

// kubeletPodStart times a pod's start through a real kubelet (kubetest's
// one-node cluster), first on a private containerd (Debian's), then on a
// private CRI-O (criotest; cocoon's "cocoon" handler, under conmon).
func (b *bench) kubeletPodStart(ctx context.Context, out, bin string, runs int) (k kubeletTimes, err error) {
	repo, err := os.Getwd()
	if err != nil {
		return k, err
	}
	unmount, err := kubetest.MountHugetlb()
	if err != nil {
		return k, err
	}
	defer func() {
		if uerr := unmount(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	d, stop, err := criDaemon(ctx, out, bin, benchKubeNetwork)
	if err != nil {
		return k, err
	}
	k.containerd = d.Version
	err = func() (err error) {
		defer stop(&err)
		k.containerdRunc, k.containerdCocoon, err = timeKubePods(ctx, d, repo, runs)
		return err
	}()
	if err != nil {
		return k, fmt.Errorf("on containerd: %w", err)
	}
	c, err := criotest.Start(ctx, criotest.Options{Bin: bin, Out: out, Repo: repo, PodNetwork: benchKubeNetwork})
	if err != nil {
		return k, err
	}
	defer c.Remove()
	k.crio = criotest.Version
	k.crioRunc, k.crioOCI, err = timeKubePods(ctx, c, repo, runs)
	c.Stop()
	if left := c.Leftovers(); len(left) > 0 && err == nil {
		err = fmt.Errorf("after the pods: %s", strings.Join(left, "; "))
	}
	if err != nil {
		return k, fmt.Errorf("on CRI-O: %w", err)
	}
	return k, nil
}

// timeKubePods starts a one-node cluster on rt and times pods' starts
// from `kubectl create` of a pod of one busybox container to `kubectl
// wait` seeing it Running, with the default runtime (runc) and the
// RuntimeClass cocoon, interleaved. Both sides pay the same two kubectl
// starts. Deleting the pod is not timed.
func timeKubePods(ctx context.Context, rt kubetest.Runtime, repo string, runs int) (runc, cocoon []time.Duration, err error) {
	c, err := kubetest.Start(ctx, rt, repo)
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
func kubeletRows(k kubeletTimes) {
	row("kubelet on containerd "+k.containerd+", runc (s)", seconds(k.containerdRunc))
	row("kubelet on containerd "+k.containerd+", cocoon (s)", seconds(k.containerdCocoon))
	row("kubelet on CRI-O "+k.crio+", runc (s)", seconds(k.crioRunc))
	row("kubelet on CRI-O "+k.crio+", cocoon (s)", seconds(k.crioOCI))
}

package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
)

// benchPodNetwork is the CNI network of the pod-start bench with a pod
// network: a bridge of its own in TEST-NET-3, apart from the CRI tests'.
var benchPodNetwork = &containerdtest.PodNetwork{Name: "cocoon-bench", Bridge: "cocoon-bench0", Subnet: "203.0.113.0/24"}

// podStart times what a pod's start costs through containerd's CRI: runp
// of a pod, then create and start of one busybox container in it, with the
// runc and cocoon runtime handlers of one private containerd, interleaved.
// The pod uses the host's network when podNet is nil, else a network of
// its own that CNI (bridge + host-local) fills from podNet. Stopping and
// removing the pod is not timed.
func (b *bench) podStart(ctx context.Context, out, bin string, runs int, podNet *containerdtest.PodNetwork) (runc, cocoon []time.Duration, err error) {
	d, stop, err := criDaemon(ctx, out, bin, podNet)
	if err != nil {
		return nil, nil, err
	}
	defer stop(&err)
	dir, err := os.MkdirTemp(b.work, "pods-")
	if err != nil {
		return nil, nil, err
	}
	ctr, err := containerdtest.ContainerConfig(dir, "c", containerdtest.BusyboxImage, "sleep", "1000")
	if err != nil {
		return nil, nil, err
	}
	crictlRun := func(args ...string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		return d.Crictl(cctx, args...)
	}
	timePod := func(handler string, i int) (time.Duration, error) {
		podConfig, runtime := containerdtest.PodConfig, handler
		if podNet != nil {
			podConfig = containerdtest.NetworkPodConfig
		} else if handler == "cocoon" {
			// A host-network pod: cocoon gives it the VM's own network.
			runtime = containerdtest.HostNSRuntime
		}
		pod, err := podConfig(dir, fmt.Sprintf("%s-%d", handler, i))
		if err != nil {
			return 0, err
		}
		start := time.Now()
		podID, err := crictlRun("runp", "--runtime", runtime, pod)
		if err != nil {
			return 0, err
		}
		defer func() {
			_, _ = crictlRun("stopp", podID)
			_, _ = crictlRun("rmp", podID)
		}()
		id, err := crictlRun("create", podID, ctr, pod)
		if err != nil {
			return 0, err
		}
		if _, err := crictlRun("start", id); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	for i := 0; i < runs; i++ {
		r, err := timePod("runc", i)
		if err != nil {
			return nil, nil, err
		}
		runc = append(runc, r)
		c, err := timePod("cocoon", i)
		if err != nil {
			return nil, nil, err
		}
		cocoon = append(cocoon, c)
	}
	return runc, cocoon, nil
}

// criNamespace is the containerd namespace of the CRI plugin.
const criNamespace = "k8s.io"

// criDaemon starts a private containerd with the CRI plugin, the pod
// network podNet (nil: host-network pods only), and the busybox and pause
// images in its CRI namespace. stop stops it and sets *err to what it left
// behind, unless *err is set already.
func criDaemon(ctx context.Context, out, bin string, podNet *containerdtest.PodNetwork) (d *containerdtest.Daemon, stop func(*error), err error) {
	d, err = containerdtest.Start(containerdtest.Options{Bin: bin, Out: out, CRI: true, SandboxImage: containerdtest.PauseImage, PodNetwork: podNet})
	if err != nil {
		return nil, nil, err
	}
	stop = func(err *error) {
		d.Stop()
		if lerr := d.Leftovers(criNamespace); lerr != nil && *err == nil {
			*err = fmt.Errorf("after the pods: %w", lerr)
		}
	}
	if err := d.ImportBusybox(ctx, criNamespace); err != nil {
		stop(&err)
		return nil, nil, err
	}
	if err := d.ImportPause(ctx, criNamespace); err != nil {
		stop(&err)
		return nil, nil, err
	}
	return d, stop, nil
}

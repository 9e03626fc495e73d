package container

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// Annotations by which containerd's CRI gives a pod's sandbox container the
// pod's resources (the sum of its containers' limits).
const (
	CRISandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	CRISandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	CRISandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// Annotations by which CRI-O gives a pod's sandbox (infra) container the
// pod's resources: the CRI LinuxContainerResources that the kubelet sums
// from the pod's containers (LinuxPodSandboxConfig.resources), in JSON.
// CRI-O 1.30 and later write the first; the second is its older name.
const (
	CRIOPodResources   = "pod-linux-resources.crio.io"
	CRIOPodResourcesV1 = "io.kubernetes.cri-o.PodLinuxResources"
)

// crioResources is what SizeOf reads of CRIOPodResources.
type crioResources struct {
	CPUPeriod   int64 `json:"cpu_period"`
	CPUQuota    int64 `json:"cpu_quota"`
	MemoryLimit int64 `json:"memory_limit_in_bytes"`
}

// GuestBaseMiB is the memory a guest needs besides its container's limit:
// its kernel (with the page array of its memory), the agent and the
// container runtime in it.
const GuestBaseMiB = 256

// SizeOf sizes the sandbox that a container (or a pod's sandbox
// container) boots, as Kata does, within the configuration's maxima:
//   - vCPUs: the configured default, or more to cover the spec's cpuset
//     (a cpuset names guest CPUs: "0-1" needs two) and its CPU quota
//     (quota/period, rounded up), or a pod's (containerd's sandbox
//     annotations, CRI-O's pod resources);
//   - memory: the configured default, or the memory limit (the pod's) plus
//     GuestBaseMiB.
//
// A cpuset that names a CPU beyond hypervisor.max_vcpus is an error; a
// larger quota or memory limit is capped (the guest's cgroup still
// enforces the limit).
func SizeOf(spec *specs.Spec, h config.Hypervisor) (sandbox.Size, error) {
	z := sandbox.Size{VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB}
	var quota, period, limit int64
	var cpus string
	if spec.Linux != nil && spec.Linux.Resources != nil {
		r := spec.Linux.Resources
		if c := r.CPU; c != nil {
			if c.Quota != nil && c.Period != nil {
				quota, period = *c.Quota, int64(*c.Period)
			}
			cpus = c.Cpus
		}
		if m := r.Memory; m != nil && m.Limit != nil {
			limit = *m.Limit
		}
	}
	for _, k := range []string{CRIOPodResourcesV1, CRIOPodResources} {
		s, ok := spec.Annotations[k]
		if !ok {
			continue
		}
		var r crioResources
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			return sandbox.Size{}, fmt.Errorf("annotation %s: %q is not CRI resources: %w", k, s, ErrInvalidArgument)
		}
		if r.CPUQuota > 0 && r.CPUPeriod > 0 {
			quota, period = r.CPUQuota, r.CPUPeriod
		}
		if r.MemoryLimit > 0 {
			limit = r.MemoryLimit
		}
	}
	for k, v := range map[string]*int64{CRISandboxCPUQuota: &quota, CRISandboxCPUPeriod: &period, CRISandboxMemory: &limit} {
		if s, ok := spec.Annotations[k]; ok {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return sandbox.Size{}, fmt.Errorf("annotation %s: %q is not a number: %w", k, s, ErrInvalidArgument)
			}
			if n > 0 {
				*v = n
			}
		}
	}
	if quota > 0 && period > 0 {
		z.VCPUs = max(z.VCPUs, min(int((quota+period-1)/period), h.MaxVCPUs))
	}
	if cpus != "" {
		highest, err := highestCPU(cpus)
		if err != nil {
			return sandbox.Size{}, fmt.Errorf("linux.resources.cpu.cpus: %w", err)
		}
		if highest >= h.MaxVCPUs {
			return sandbox.Size{}, fmt.Errorf("linux.resources.cpu.cpus %q names CPU %d, but a sandbox has at most %d vCPUs (hypervisor.max_vcpus): %w", cpus, highest, h.MaxVCPUs, ErrInvalidArgument)
		}
		z.VCPUs = max(z.VCPUs, highest+1)
	}
	if limit > 0 {
		z.MemoryMiB = max(z.MemoryMiB, min(int((limit+(1<<20)-1)>>20)+GuestBaseMiB, h.MaxMemoryMiB))
	}
	return z, nil
}

// highestCPU returns the highest CPU number of a cpuset list ("0-2,5").
func highestCPU(list string) (int, error) {
	highest := -1
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0, fmt.Errorf("%q is not a CPU list: %w", list, ErrInvalidArgument)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("%q is not a CPU list: %w", list, ErrInvalidArgument)
			}
		}
		highest = max(highest, b)
	}
	return highest, nil
}

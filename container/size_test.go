package container

import (
	"errors"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/sandbox"
)

func TestSizeOf(t *testing.T) {
	h := config.Hypervisor{VCPUs: 1, MemoryMiB: 1024, MaxVCPUs: 4, MaxMemoryMiB: 8192}
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	res := func(r specs.LinuxResources) *specs.Spec { return &specs.Spec{Linux: &specs.Linux{Resources: &r}} }
	for name, tc := range map[string]struct {
		spec *specs.Spec
		want sandbox.Size
		err  bool
	}{
		"nothing asked":   {spec: &specs.Spec{}, want: sandbox.Size{VCPUs: 1, MemoryMiB: 1024}},
		"cpuset 0-1":      {spec: res(specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-1"}}), want: sandbox.Size{VCPUs: 2, MemoryMiB: 1024}},
		"cpuset 0,3":      {spec: res(specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0,3"}}), want: sandbox.Size{VCPUs: 4, MemoryMiB: 1024}},
		"cpuset too big":  {spec: res(specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-7"}}), err: true},
		"cpuset bad":      {spec: res(specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "2-1"}}), err: true},
		"quota 2.5 cpus":  {spec: res(specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(250000), Period: u64(100000)}}), want: sandbox.Size{VCPUs: 3, MemoryMiB: 1024}},
		"quota capped":    {spec: res(specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(1600000), Period: u64(100000)}}), want: sandbox.Size{VCPUs: 4, MemoryMiB: 1024}},
		"small memory":    {spec: res(specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20)}}), want: sandbox.Size{VCPUs: 1, MemoryMiB: 1024}},
		"2 GiB memory":    {spec: res(specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(2 << 30)}}), want: sandbox.Size{VCPUs: 1, MemoryMiB: 2048 + GuestBaseMiB}},
		"memory capped":   {spec: res(specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 30)}}), want: sandbox.Size{VCPUs: 1, MemoryMiB: 8192}},
		"containerd pod":  {spec: &specs.Spec{Annotations: map[string]string{CRISandboxCPUQuota: "200000", CRISandboxCPUPeriod: "100000", CRISandboxMemory: "3221225472"}}, want: sandbox.Size{VCPUs: 2, MemoryMiB: 3072 + GuestBaseMiB}},
		"cri-o pod":       {spec: &specs.Spec{Annotations: map[string]string{CRIOPodResources: `{"cpu_period":100000,"cpu_quota":300000,"cpu_shares":3072,"memory_limit_in_bytes":2147483648,"oom_score_adj":-998}`}}, want: sandbox.Size{VCPUs: 3, MemoryMiB: 2048 + GuestBaseMiB}},
		"cri-o v1 name":   {spec: &specs.Spec{Annotations: map[string]string{CRIOPodResourcesV1: `{"memory_limit_in_bytes":1610612736}`}}, want: sandbox.Size{VCPUs: 1, MemoryMiB: 1536 + GuestBaseMiB}},
		"cri-o no limits": {spec: &specs.Spec{Annotations: map[string]string{CRIOPodResources: `{"cpu_period":100000,"cpu_shares":2}`}}, want: sandbox.Size{VCPUs: 1, MemoryMiB: 1024}},
		"cri-o null":      {spec: &specs.Spec{Annotations: map[string]string{CRIOPodResources: `null`}}, want: sandbox.Size{VCPUs: 1, MemoryMiB: 1024}},
		"cri-o bad":       {spec: &specs.Spec{Annotations: map[string]string{CRIOPodResources: `{"memory_limit_in_bytes":"lots"}`}}, err: true},
		"bad annotation":  {spec: &specs.Spec{Annotations: map[string]string{CRISandboxMemory: "lots"}}, err: true},
		"zero annotation": {spec: &specs.Spec{Annotations: map[string]string{CRISandboxMemory: "0"}}, want: sandbox.Size{VCPUs: 1, MemoryMiB: 1024}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := SizeOf(tc.spec, h)
			if tc.err {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("error %v, want an invalid argument", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("SizeOf = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

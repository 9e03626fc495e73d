package hostcheck

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/initrd"
)

const (
	qemuVersionOut = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022\n"
	qemuAccelOut   = "Accelerators supported in QEMU binary:\ntcg\nkvm\n"
	qemuDevOut     = "Storage devices:\nname \"virtio-9p-device\", bus virtio-bus\nname \"virtio-9p-pci\", bus PCI, alias \"virtio-9p\"\n" +
		"name \"virtio-serial-device\", bus virtio-bus\nname \"vhost-user-fs-device\", bus virtio-bus\n"
)

// fakeQEMU answers as QEMU 7.2 does, or with version instead of its banner.
func fakeQEMU(banner string) func(context.Context, string, ...string) ([]byte, error) {
	return func(_ context.Context, name string, args ...string) ([]byte, error) {
		switch strings.Join(args, " ") {
		case "--version":
			return []byte(banner), nil
		case "-accel help":
			return []byte(qemuAccelOut), nil
		case "-nodefaults -machine none -device help":
			return []byte(qemuDevOut), nil
		}
		return nil, errors.New("unexpected arguments")
	}
}

// fakeHost lays out a host in a temporary directory: cpuinfo with flags,
// device files that exist where named, and mounts.
func fakeHost(t *testing.T, flags string, devices []string, mounts string) Host {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h := Host{
		CPUInfo:    write("cpuinfo", "processor\t: 0\nflags\t\t: fpu "+flags+" sse2\n"),
		Mounts:     write("mounts", mounts),
		KVM:        filepath.Join(dir, "kvm"),
		VhostVsock: filepath.Join(dir, "vhost-vsock"),
		Tun:        filepath.Join(dir, "tun"),
		TC:         func() error { return nil },
		Command:    fakeQEMU(qemuVersionOut),
	}
	for _, d := range devices {
		write(d, "")
	}
	return h
}

// fakeImages writes a vmlinux-like ELF with a version banner, its
// kernel.release, and an initrd built with version.
func fakeImages(t *testing.T, release, recorded, version string) (kernel, image string) {
	t.Helper()
	dir := t.TempDir()
	kernel = filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(kernel, []byte("\x7fELF....Linux version "+release+" (builder@host) #1 SMP\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if recorded != "" {
		if err := os.WriteFile(filepath.Join(dir, "kernel.release"), []byte(recorded+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	agent := filepath.Join(dir, "agent")
	if err := os.WriteFile(agent, []byte("\x7fELF agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	image = filepath.Join(dir, "initrd.img")
	if err := initrd.Build(initrd.Options{AgentPath: agent, Output: image, Version: version}); err != nil {
		t.Fatal(err)
	}
	return kernel, image
}

func defaults(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func byName(rs []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

const hybridMounts = "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"

// TestTCGHostRunsWithWarnings is this CI machine: no vmx/svm, a /dev/kvm
// that opens but is not used, no vhost-vsock.
func TestTCGHostRunsWithWarnings(t *testing.T) {
	h := fakeHost(t, "", []string{"kvm", "tun"}, hybridMounts)
	cfg := defaults(t)
	cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd = fakeImages(t, "6.1.192-cocoon", "6.1.192-cocoon", "v1")
	in := Input{Config: cfg, Accelerator: hypervisor.TCG, Why: "no vmx/svm in /proc/cpuinfo", RuntimeVersion: "v1",
		Helpers:      []Helper{{Name: "cocoon-relay", Path: "/usr/local/bin/cocoon-relay"}},
		TemplatesWhy: "QEMU 7.2.22 opens a template's memory read-write for its clones"}
	rs := Run(context.Background(), h, in)
	if !OK(rs) {
		t.Fatalf("a TCG host must be able to run cocoon: %+v", rs)
	}
	got := byName(rs)
	want := map[string]Status{
		"cpu": Warn, "kvm": Warn, "accelerator": Warn, "qemu": Pass, "qemu-accel": Pass, "qemu-9p": Pass,
		"qemu-agent": Pass, "kernel": Pass, "initrd": Pass, "vhost-vsock": Warn, "tun": Pass, "tc": Pass,
		"cgroups": Pass, "cocoon-relay": Pass, "templates": Warn,
	}
	for name, st := range want {
		if got[name].Status != st {
			t.Errorf("%s: got %s (%s), want %s", name, got[name].Status, got[name].Detail, st)
		}
		if st != Pass && got[name].Fix == "" {
			t.Errorf("%s: %s without a fix", name, st)
		}
	}
	if len(rs) != len(want) {
		t.Errorf("got %d results, want %d", len(rs), len(want))
	}
	if d := got["templates"].Detail; !strings.Contains(d, "off: QEMU 7.2.22") {
		t.Errorf("templates: %q, want off, saying why", d)
	}
	if d := got["accelerator"].Detail; !strings.Contains(d, "tcg") || !strings.Contains(d, "vmx/svm") {
		t.Errorf("accelerator warning must say tcg and name vmx/svm: %q", d)
	}
	if d := got["qemu"].Detail; !strings.Contains(d, "7.2.22") {
		t.Errorf("qemu: %q", d)
	}
}

func TestKVMHostPasses(t *testing.T) {
	h := fakeHost(t, "vmx", []string{"kvm", "tun", "vhost-vsock"}, "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")
	cfg := defaults(t)
	cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd = fakeImages(t, "6.1.1", "6.1.1", "v1")
	rs := Run(context.Background(), h, Input{Config: cfg, Accelerator: hypervisor.KVM, Why: "cpu has vmx", RuntimeVersion: "v1",
		Templates: true, TemplatesWhy: "QEMU 10.0.2 maps templates read-only"})
	for _, r := range rs {
		if r.Status != Pass {
			t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
		}
	}
}

func TestFailures(t *testing.T) {
	for name, tc := range map[string]struct {
		setup func(h *Host, in *Input)
		check string
		fix   string
	}{
		"no qemu": {func(h *Host, in *Input) {
			h.Command = func(context.Context, string, ...string) ([]byte, error) {
				return nil, errors.New("exec: not found")
			}
		}, "qemu", "qemu-system-x86"},
		"old qemu": {func(h *Host, in *Input) { h.Command = fakeQEMU("QEMU emulator version 4.1.0\n") }, "qemu", "10.0"},
		"kvm forced": {func(h *Host, in *Input) {
			in.Config.Hypervisor.Accelerator = "kvm"
			in.Accelerator, in.Err = "", errors.New("accelerator kvm is configured but unusable")
		}, "accelerator", `"auto"`},
		"no kernel":     {func(h *Host, in *Input) { in.Config.Hypervisor.Kernel = "/nonexistent/vmlinux" }, "kernel", "make kernel image install"},
		"not a kernel":  {func(h *Host, in *Input) { in.Config.Hypervisor.Kernel = h.CPUInfo }, "kernel", "make"},
		"no initrd":     {func(h *Host, in *Input) { in.Config.Hypervisor.Initrd = "/nonexistent/initrd.img" }, "initrd", "make"},
		"no tun":        {func(h *Host, in *Input) { h.Tun = "/nonexistent/tun" }, "tun", "modprobe tun"},
		"no tc":         {func(h *Host, in *Input) { h.TC = func() error { return errors.New("operation not supported") } }, "tc", "act_mirred"},
		"no cgroups":    {func(h *Host, in *Input) { h.Mounts = h.CPUInfo }, "cgroups", "cgroup2"},
		"vsock forced":  {func(h *Host, in *Input) { in.Config.Agent.Transport = "vsock" }, "vhost-vsock", "modprobe vhost_vsock"},
		"no 9p on q35":  {func(h *Host, in *Input) { in.Config.Hypervisor.Machine = "q35" }, "qemu-agent", "qemu-system-x86"},
		"missing relay": {func(h *Host, in *Input) { in.Helpers = []Helper{{Name: "cocoon-relay", Err: errors.New("not found")}} }, "cocoon-relay", "make install"},
		"replaced kern": {func(h *Host, in *Input) { in.Config.Hypervisor.Kernel, _ = fakeImages(t, "6.1.2", "6.1.1", "v1") }, "kernel", "make"},
	} {
		t.Run(name, func(t *testing.T) {
			h := fakeHost(t, "", []string{"tun"}, hybridMounts)
			cfg := defaults(t)
			cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd = fakeImages(t, "6.1.1", "6.1.1", "v1")
			in := Input{Config: cfg, Accelerator: hypervisor.TCG, Why: "no vmx/svm", RuntimeVersion: "v1"}
			tc.setup(&h, &in)
			rs := Run(context.Background(), h, in)
			if OK(rs) {
				t.Fatal("a failed check must make the host not OK")
			}
			r := byName(rs)[tc.check]
			if r.Status != Fail || !strings.Contains(r.Fix, tc.fix) {
				t.Fatalf("%s: got %+v, want fail with a fix naming %q", tc.check, r, tc.fix)
			}
		})
	}
}

func TestVirtioFS(t *testing.T) {
	daemon := filepath.Join(t.TempDir(), "virtiofsd")
	if err := os.WriteFile(daemon, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		machine, virtiofsd string
		want               map[string]Status
		fix                string
	}{
		"microvm with virtiofsd": {"microvm", daemon, map[string]Status{"qemu-virtio-fs": Pass, "virtiofsd": Pass}, ""},
		"no virtiofsd":           {"microvm", "/nonexistent/virtiofsd", map[string]Status{"qemu-virtio-fs": Pass, "virtiofsd": Fail}, `"virtiofsd" package`},
		"no pci device on q35":   {"q35", daemon, map[string]Status{"qemu-virtio-fs": Fail, "virtiofsd": Pass}, "vhost-user-fs"},
	} {
		t.Run(name, func(t *testing.T) {
			h := fakeHost(t, "", []string{"tun"}, hybridMounts)
			cfg := defaults(t)
			cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd = fakeImages(t, "6.1.1", "6.1.1", "v1")
			cfg.Hypervisor.SharedFS, cfg.Hypervisor.Virtiofsd, cfg.Hypervisor.Machine = "virtio-fs", tc.virtiofsd, tc.machine
			got := byName(Run(context.Background(), h, Input{Config: cfg, Accelerator: hypervisor.TCG, RuntimeVersion: "v1"}))
			for n, st := range tc.want {
				if got[n].Status != st {
					t.Errorf("%s: got %s (%s), want %s", n, got[n].Status, got[n].Detail, st)
				}
				if st == Fail && !strings.Contains(got[n].Fix, tc.fix) {
					t.Errorf("%s: fix %q does not name %q", n, got[n].Fix, tc.fix)
				}
			}
			if _, ok := got["qemu-9p"]; ok {
				t.Error("qemu-9p checked with virtio-fs configured")
			}
		})
	}
}

func TestMismatchedInitrdWarns(t *testing.T) {
	h := fakeHost(t, "", []string{"tun"}, hybridMounts)
	cfg := defaults(t)
	cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd = fakeImages(t, "6.1.1", "6.1.1", "v0.9")
	rs := Run(context.Background(), h, Input{Config: cfg, Accelerator: hypervisor.TCG, RuntimeVersion: "v1.0"})
	r := byName(rs)["initrd"]
	if r.Status != Warn || !strings.Contains(r.Detail, "v0.9") || !strings.Contains(r.Detail, "v1.0") {
		t.Fatalf("got %+v", r)
	}
}

func TestInspectKernelBzImage(t *testing.T) {
	b := make([]byte, 0x400)
	copy(b[0x202:], "HdrS")
	b[0x20e] = 0x00 // version string at 0x100 + 0x200 = 0x300
	b[0x20f] = 0x01
	copy(b[0x300:], "6.1.192-cocoon (root@host) #1\x00")
	p := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := InspectKernel(p)
	if err != nil || k.Format != "bzImage" || k.Release != "6.1.192-cocoon" {
		t.Fatalf("got %+v, %v", k, err)
	}
}

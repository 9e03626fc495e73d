package hostcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
)

const fixFirmware = "enable Intel VT-x (vmx) or AMD-V/SVM (svm) in the firmware setup; " +
	"inside a VM, enable nested virtualization (kvm_intel nested=1 or kvm_amd nested=1 on its host, " +
	"or the provider's nested-virtualization setting)"

func checkCPU(h Host) Result {
	r := Result{Name: "cpu"}
	b, err := os.ReadFile(h.CPUInfo)
	if err != nil {
		r.Status, r.Detail, r.Fix = Warn, fmt.Sprintf("cannot read %s: %v", h.CPUInfo, err), "mount /proc"
		return r
	}
	if f := qemu.VirtualizationFlag(string(b)); f != "" {
		r.Status, r.Detail = Pass, fmt.Sprintf("hardware virtualization: %s in %s", f, h.CPUInfo)
		return r
	}
	r.Status = Warn
	r.Detail = fmt.Sprintf("no vmx/svm in %s: no hardware virtualization, guests run under TCG (software emulation, about 10x slower)", h.CPUInfo)
	r.Fix = fixFirmware
	return r
}

func checkKVM(h Host, want string) Result {
	r := Result{Name: "kvm"}
	cpuinfo, _ := os.ReadFile(h.CPUInfo)
	flag := qemu.VirtualizationFlag(string(cpuinfo))
	// A failure matters only when the configuration insists on KVM.
	bad := Warn
	if want == "kvm" {
		bad = Fail
	}
	f, err := os.OpenFile(h.KVM, os.O_RDWR, 0)
	switch {
	case err == nil && flag == "":
		f.Close()
		r.Status = bad
		r.Detail = h.KVM + " opens read-write, but without vmx/svm it is a paravirtual or emulated KVM that ordinary guest kernels cannot use: not used"
		r.Fix = fixFirmware
	case err == nil:
		f.Close()
		r.Status, r.Detail = Pass, h.KVM+" opens read-write"
	case errors.Is(err, fs.ErrNotExist):
		r.Status, r.Detail = bad, h.KVM+" does not exist"
		r.Fix = "modprobe kvm_intel (Intel) or kvm_amd (AMD) after enabling virtualization in the firmware"
	case errors.Is(err, fs.ErrPermission):
		r.Status, r.Detail = bad, fmt.Sprintf("%s: %v", h.KVM, err)
		r.Fix = "run as root, or add the user to the kvm group (usermod -aG kvm USER)"
	default:
		r.Status, r.Detail = bad, fmt.Sprintf("%s: %v", h.KVM, err)
		r.Fix = "check dmesg for kvm errors"
	}
	return r
}

func checkAccelerator(in Input) Result {
	r := Result{Name: "accelerator"}
	switch {
	case in.Err != nil:
		r.Status, r.Detail = Fail, in.Err.Error()
		r.Fix = `set hypervisor.accelerator = "auto" (or "tcg") in the configuration, or ` + fixFirmware
	case in.Accelerator == hypervisor.KVM:
		r.Status, r.Detail = Pass, fmt.Sprintf("kvm (hypervisor.accelerator = %q): %s", in.Config.Hypervisor.Accelerator, in.Why)
	default:
		r.Status = Warn
		r.Detail = fmt.Sprintf("tcg (hypervisor.accelerator = %q): %s; software emulation is about 10x slower and every timeout is scaled by %d",
			in.Config.Hypervisor.Accelerator, in.Why, in.Accelerator.TimeoutScale())
		r.Fix = "see cpu"
	}
	return r
}

func checkVsock(h Host, transport string) Result {
	r := Result{Name: "vhost-vsock"}
	f, err := os.OpenFile(h.VhostVsock, os.O_RDWR, 0)
	if err == nil {
		f.Close()
		r.Status, r.Detail = Pass, h.VhostVsock+" opens read-write: the agent is reached over vsock"
		return r
	}
	r.Detail = fmt.Sprintf("%v: the agent is reached over virtio-serial through cocoon-proxy", err)
	r.Status = Warn
	if transport == "vsock" {
		r.Status, r.Detail = Fail, fmt.Sprintf(`agent.transport = "vsock" but %v`, err)
	}
	r.Fix = "modprobe vhost_vsock"
	if transport == "vsock" {
		r.Fix += `, or set agent.transport = "auto"`
	}
	return r
}

func checkTun(h Host) Result {
	r := Result{Name: "tun"}
	f, err := os.OpenFile(h.Tun, os.O_RDWR, 0)
	if err != nil {
		r.Status, r.Detail = Fail, fmt.Sprintf("%v: containers with a network cannot get a tap device", err)
		r.Fix = "modprobe tun (and mknod /dev/net/tun c 10 200 where no devtmpfs creates it)"
		return r
	}
	f.Close()
	r.Status, r.Detail = Pass, h.Tun+" opens read-write"
	return r
}

func checkTC(h Host) Result {
	r := Result{Name: "tc"}
	if err := h.TC(); err != nil {
		r.Status, r.Detail = Fail, fmt.Sprintf("mirroring a veth to a tap does not work: %v", err)
		r.Fix = "run as root (CAP_NET_ADMIN); modprobe sch_ingress act_mirred cls_u32 (kernel options NET_SCH_INGRESS, NET_ACT_MIRRED, NET_CLS_U32)"
		return r
	}
	r.Status, r.Detail = Pass, "netlink, tap, ingress qdisc and mirred redirect work (in a throw-away network namespace)"
	return r
}

// checkCgroups reports the host's cgroup layout. The containers' own
// cgroups are the guest's; the host needs cgroups for the processes that
// Docker, containerd and CRI-O place (QEMU runs in the caller's cgroup).
func checkCgroups(h Host) Result {
	r := Result{Name: "cgroups"}
	b, err := os.ReadFile(h.Mounts)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), "mount /proc"
		return r
	}
	var v2 string
	v1 := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		switch f[2] {
		case "cgroup2":
			if v2 == "" {
				v2 = f[1]
			}
		case "cgroup":
			for _, o := range strings.Split(f[3], ",") {
				switch o {
				case "cpu", "memory", "pids", "devices", "freezer", "cpuset", "blkio":
					v1[o] = true
				}
			}
		}
	}
	var ctrls []string
	for c := range v1 {
		ctrls = append(ctrls, c)
	}
	sort.Strings(ctrls)
	switch {
	case v2 != "" && len(ctrls) == 0:
		r.Status, r.Detail = Pass, "cgroup v2 (unified) at "+v2
	case len(ctrls) > 0 && v1["cpu"] && v1["memory"]:
		mode := "cgroup v1"
		if v2 != "" {
			mode = "cgroup v1 + v2 (hybrid, v2 at " + v2 + ")"
		}
		r.Status, r.Detail = Pass, fmt.Sprintf("%s, controllers %s", mode, strings.Join(ctrls, ","))
	case len(ctrls) > 0:
		r.Status, r.Detail = Warn, "cgroup v1 without cpu or memory controller: "+strings.Join(ctrls, ",")
		r.Fix = "mount the cpu and memory cgroup controllers (systemd does), or boot with systemd.unified_cgroup_hierarchy=1"
	default:
		r.Status, r.Detail = Fail, "no cgroup file system mounted"
		r.Fix = "mount -t cgroup2 none /sys/fs/cgroup (systemd does this at boot)"
	}
	return r
}

func checkHelper(hp Helper) Result {
	r := Result{Name: hp.Name}
	if hp.Err != nil {
		r.Status, r.Detail = Fail, hp.Err.Error()
		r.Fix = "make install (puts it next to cocoon-runtime in /usr/local/bin)"
		return r
	}
	r.Status, r.Detail = Pass, hp.Path
	return r
}

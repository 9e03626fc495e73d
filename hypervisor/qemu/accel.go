package qemu

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// KVMDevice is the device QEMU opens for KVM.
const KVMDevice = "/dev/kvm"

// DetectAccelerator says which accelerator this host can use, and why: KVM
// only where the CPU advertises hardware virtualization (vmx or svm in
// /proc/cpuinfo) and /dev/kvm opens read-write; TCG otherwise. A /dev/kvm
// alone is not enough: a nested paravirtual KVM without vmx/svm does not run
// ordinary guest kernels.
func DetectAccelerator() (hypervisor.Accelerator, string) {
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return hypervisor.TCG, fmt.Sprintf("cannot read /proc/cpuinfo: %v", err)
	}
	return detectAccelerator(string(cpuinfo), openKVM)
}

// openKVM opens /dev/kvm read-write, as QEMU does.
func openKVM() error {
	f, err := os.OpenFile(KVMDevice, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// detectAccelerator is DetectAccelerator over the text of /proc/cpuinfo and
// a function that opens /dev/kvm.
func detectAccelerator(cpuinfo string, open func() error) (hypervisor.Accelerator, string) {
	flag := VirtualizationFlag(cpuinfo)
	if flag == "" {
		return hypervisor.TCG, "no vmx/svm in /proc/cpuinfo: the cpu offers no hardware virtualization"
	}
	if err := open(); err != nil {
		return hypervisor.TCG, fmt.Sprintf("cpu has %s but %s is not usable: %v", flag, KVMDevice, err)
	}
	return hypervisor.KVM, fmt.Sprintf("cpu has %s and %s opens read-write", flag, KVMDevice)
}

// VirtualizationFlag returns "vmx" or "svm" when a "flags" line of cpuinfo
// has it, and "" otherwise.
func VirtualizationFlag(cpuinfo string) string {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, f := range strings.Fields(value) {
			if f == "vmx" || f == "svm" {
				return f
			}
		}
	}
	return ""
}

package qemu

import (
	"errors"
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

func TestDetectAccelerator(t *testing.T) {
	const (
		intel = "processor\t: 0\nflags\t\t: fpu vme de pse vmx ssse3\n\nprocessor\t: 1\nflags\t\t: fpu vme de pse vmx ssse3\n"
		amd   = "processor\t: 0\nflags\t\t: fpu svm lm\n"
		none  = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu vme hypervisor lm\n"
	)
	opened := func() error { return nil }
	denied := func() error { return errors.New("open /dev/kvm: permission denied") }
	unexpected := func() error { t.Error("/dev/kvm opened without vmx/svm"); return nil }

	tests := map[string]struct {
		cpuinfo string
		open    func() error
		want    hypervisor.Accelerator
		why     string
	}{
		"intel with kvm":      {intel, opened, hypervisor.KVM, "cpu has vmx"},
		"amd with kvm":        {amd, opened, hypervisor.KVM, "cpu has svm"},
		"kvm device unusable": {intel, denied, hypervisor.TCG, "permission denied"},
		"no hardware support": {none, unexpected, hypervisor.TCG, "no vmx/svm in /proc/cpuinfo"},
		"vmx outside flags":   {"model name\t: vmx svm\nflags\t: fpu\n", unexpected, hypervisor.TCG, "no vmx/svm"},
		"empty cpuinfo":       {"", unexpected, hypervisor.TCG, "no vmx/svm"},
		"flag as a substring": {"flags\t: vmxnet svmx\n", unexpected, hypervisor.TCG, "no vmx/svm"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, why := detectAccelerator(tc.cpuinfo, tc.open)
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Errorf("detectAccelerator = %q, %q; want %q and a reason containing %q", got, why, tc.want, tc.why)
			}
		})
	}
}

func TestDetectAcceleratorHost(t *testing.T) {
	// Whatever the host, the answer comes with a reason.
	acc, why := DetectAccelerator()
	if (acc != hypervisor.KVM && acc != hypervisor.TCG) || why == "" {
		t.Errorf("DetectAccelerator = %q, %q", acc, why)
	}
	t.Logf("this host: %s (%s)", acc, why)
}

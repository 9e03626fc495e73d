package qemu

import (
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// TestCommandLineTemplate: a template's RAM is its memory file, shared; a
// clone maps the same file privately and waits for its device state; the
// devices are those of the same VM booted.
func TestCommandLineTemplate(t *testing.T) {
	plain, err := CommandLine(baseConfig(MachineMicroVM), baseFeatures)
	if err != nil {
		t.Fatal(err)
	}
	for _, restore := range []bool{false, true} {
		cfg := baseConfig(MachineMicroVM)
		cfg.Template = &hypervisor.Template{MemoryFile: "/t/k,1/memory", StateFile: "/t/k/state", Restore: restore}
		args, err := CommandLine(cfg, baseFeatures)
		if err != nil {
			t.Fatalf("restore %t: %v", restore, err)
		}
		share := "on"
		if restore {
			share = "off"
		}
		for _, seq := range [][]string{
			{"-M", "microvm,rtc=on,pit=off,memory-backend=mem"},
			{"-object", "memory-backend-file,id=mem,size=2048M,mem-path=/t/k,,1/memory,share=" + share},
		} {
			if !hasSequence(args, seq) {
				t.Errorf("restore %t: %v missing from %v", restore, seq, args)
			}
		}
		if got := hasSequence(args, []string{"-incoming", "defer"}); got != restore {
			t.Errorf("restore %t: -incoming defer present: %t", restore, got)
		}
		// Same devices as the booted VM's.
		if got, want := devices(args), devices(plain); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("restore %t: devices %v, booted %v", restore, got, want)
		}
	}
}

func devices(args []string) []string {
	var d []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-device" {
			d = append(d, args[i+1])
		}
	}
	return d
}

// TestTemplateFD: the state file's descriptor follows the taps.
func TestTemplateFD(t *testing.T) {
	cfg := baseConfig(MachineMicroVM)
	if got := templateFD(cfg); got != NICFirstFD {
		t.Errorf("no nic: fd %d, want %d", got, NICFirstFD)
	}
	cfg.NICs = make([]hypervisor.NIC, 2)
	if got := templateFD(cfg); got != NICFirstFD+2 {
		t.Errorf("two nics: fd %d, want %d", got, NICFirstFD+2)
	}
}

// TestValidateTemplate: templates refuse what does not migrate, and need
// absolute paths.
func TestValidateTemplate(t *testing.T) {
	tmpl := &hypervisor.Template{MemoryFile: "/t/memory", StateFile: "/t/state"}
	tests := map[string]struct {
		cfg  func() hypervisor.VMConfig
		want string
	}{
		"virtio-fs": {func() hypervisor.VMConfig {
			c := withVirtioFS(baseConfig(MachineMicroVM))
			c.Template = tmpl
			return c
		}, "virtio-fs"},
		"vsock": {func() hypervisor.VMConfig {
			c := baseConfig(MachineMicroVM)
			c.VsockCID = 7
			c.Template = tmpl
			return c
		}, "vsock"},
		"relative": {func() hypervisor.VMConfig {
			c := baseConfig(MachineMicroVM)
			c.Template = &hypervisor.Template{MemoryFile: "memory", StateFile: "/t/state"}
			return c
		}, "template memory file"},
	}
	for name, tc := range tests {
		err := Validate(tc.cfg())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one about %q", name, err, tc.want)
		}
	}
	c := baseConfig(MachineMicroVM)
	c.Template = tmpl
	if err := Validate(c); err != nil {
		t.Errorf("valid template config: %v", err)
	}
}

package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		edit func(*hypervisor.VMConfig)
		// want is a substring of the error; "" means valid.
		want string
	}{
		"valid":               {},
		"valid vsock only":    {edit: func(c *hypervisor.VMConfig) { c.AgentSocket = ""; c.VsockCID = 3 }},
		"empty id":            {edit: func(c *hypervisor.VMConfig) { c.ID = "" }, want: "id is empty"},
		"id with newline":     {edit: func(c *hypervisor.VMConfig) { c.ID = "a\nb" }, want: "control characters"},
		"relative dir":        {edit: func(c *hypervisor.VMConfig) { c.Dir = "run/x" }, want: `dir "run/x" is not an absolute path`},
		"long dir":            {edit: func(c *hypervisor.VMConfig) { c.Dir = "/" + strings.Repeat("d", 100) }, want: "too long"},
		"unknown machine":     {edit: func(c *hypervisor.VMConfig) { c.Machine = "pc" }, want: `unknown machine type "pc"`},
		"no accelerator":      {edit: func(c *hypervisor.VMConfig) { c.Accelerator = "" }, want: "unknown accelerator"},
		"zero vcpus":          {edit: func(c *hypervisor.VMConfig) { c.VCPUs = 0 }, want: "vcpus 0 out of range"},
		"too many vcpus":      {edit: func(c *hypervisor.VMConfig) { c.VCPUs = 1000 }, want: "vcpus 1000 out of range"},
		"tiny memory":         {edit: func(c *hypervisor.VMConfig) { c.MemoryMiB = 16 }, want: "below the minimum"},
		"no kernel":           {edit: func(c *hypervisor.VMConfig) { c.Kernel = "" }, want: "kernel is empty"},
		"relative initrd":     {edit: func(c *hypervisor.VMConfig) { c.Initrd = "initrd" }, want: "initrd \"initrd\" is not an absolute path"},
		"empty kernel param":  {edit: func(c *hypervisor.VMConfig) { c.KernelParams = []string{""} }, want: "kernel parameter"},
		"console outside dir": {edit: func(c *hypervisor.VMConfig) { c.ConsoleLog = "/tmp/console.log" }, want: "not inside the vm directory"},
		"socket escapes dir":  {edit: func(c *hypervisor.VMConfig) { c.AgentSocket = c.Dir + "/../agent.sock" }, want: "not inside the vm directory"},
		"socket is the dir":   {edit: func(c *hypervisor.VMConfig) { c.AgentSocket = c.Dir }, want: "not inside the vm directory"},
		"socket on qmp":       {edit: func(c *hypervisor.VMConfig) { c.AgentSocket = c.Dir + "/qmp.sock" }, want: "collides"},
		"no agent channel":    {edit: func(c *hypervisor.VMConfig) { c.AgentSocket = "" }, want: "no agent channel"},
		"reserved cid":        {edit: func(c *hypervisor.VMConfig) { c.VsockCID = 2 }, want: "vsock cid 2 is reserved"},
		"any cid":             {edit: func(c *hypervisor.VMConfig) { c.VsockCID = ^uint32(0) }, want: "is reserved"},
		"bad tag":             {edit: func(c *hypervisor.VMConfig) { c.SharedDirs = []hypervisor.SharedDir{{Tag: "a,b", HostPath: "/x"}} }, want: "may hold only"},
		"long tag": {edit: func(c *hypervisor.VMConfig) {
			c.SharedDirs = []hypervisor.SharedDir{{Tag: strings.Repeat("t", 32), HostPath: "/x"}}
		}, want: "1 to 31"},
		"duplicate tag": {edit: func(c *hypervisor.VMConfig) {
			c.SharedDirs = []hypervisor.SharedDir{{Tag: "a", HostPath: "/x"}, {Tag: "a", HostPath: "/y"}}
		}, want: "used twice"},
		"nic": {edit: func(c *hypervisor.VMConfig) {
			c.NICs = []hypervisor.NIC{{MAC: mac("02:00:00:00:00:01"), Tap: os.Stdin, MTU: 1500}}
		}},
		"nic short mac": {edit: func(c *hypervisor.VMConfig) {
			c.NICs = []hypervisor.NIC{{MAC: mac("02:00:00:00:00:01")[:5], Tap: os.Stdin}}
		}, want: "not an ethernet address"},
		"nic multicast mac": {edit: func(c *hypervisor.VMConfig) {
			c.NICs = []hypervisor.NIC{{MAC: mac("01:00:5e:00:00:01"), Tap: os.Stdin}}
		}, want: "multicast"},
		"nic duplicate mac": {edit: func(c *hypervisor.VMConfig) {
			c.NICs = []hypervisor.NIC{{MAC: mac("02:00:00:00:00:01"), Tap: os.Stdin}, {MAC: mac("02:00:00:00:00:01"), Tap: os.Stdin}}
		}, want: "used twice"},
		"nic without tap": {edit: func(c *hypervisor.VMConfig) { c.NICs = []hypervisor.NIC{{MAC: mac("02:00:00:00:00:01")}} }, want: "no tap device"},
		"nic tiny mtu": {edit: func(c *hypervisor.VMConfig) {
			c.NICs = []hypervisor.NIC{{MAC: mac("02:00:00:00:00:01"), Tap: os.Stdin, MTU: 10}}
		}, want: "mtu 10 out of range"},
		"relative shared path": {edit: func(c *hypervisor.VMConfig) { c.SharedDirs = []hypervisor.SharedDir{{Tag: "a", HostPath: "x"}} }, want: "not an absolute path"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := baseConfig(MachineQ35)
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			err := Validate(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestValidateReportsAllErrors(t *testing.T) {
	err := Validate(hypervisor.VMConfig{ID: "x"})
	if err == nil {
		t.Fatal("Validate of an empty config succeeded")
	}
	for _, want := range []string{`invalid vm config "x"`, "dir is empty", "kernel is empty", "unknown machine", "no agent channel"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	got := withDefaults(hypervisor.VMConfig{})
	if got.Binary != DefaultBinary || got.Machine != DefaultMachine || got.VCPUs != DefaultVCPUs || got.MemoryMiB != DefaultMemoryMiB {
		t.Errorf("withDefaults = %+v", got)
	}
	if got.Accelerator != "" {
		t.Errorf("withDefaults set the accelerator to %q; Start detects it", got.Accelerator)
	}
	kept := withDefaults(hypervisor.VMConfig{Machine: MachineQ35, VCPUs: 2, MemoryMiB: 256, Binary: "/q"})
	if kept.Machine != MachineQ35 || kept.VCPUs != 2 || kept.MemoryMiB != 256 || kept.Binary != "/q" {
		t.Errorf("withDefaults overrode set fields: %+v", kept)
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(kernel, []byte("\x7fELF...."), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(MachineQ35)
	cfg.Dir = dir
	cfg.Kernel = kernel
	cfg.Initrd = ""
	if err := checkFiles(cfg); err != nil {
		t.Fatalf("checkFiles: %v", err)
	}
	elf, err := isELF(kernel)
	if err != nil || !elf {
		t.Errorf("isELF(vmlinux) = %v, %v", elf, err)
	}

	cfg.Initrd = filepath.Join(dir, "missing.img")
	cfg.SharedDirs = []hypervisor.SharedDir{{Tag: "s", HostPath: kernel}}
	err = checkFiles(cfg)
	if err == nil || !strings.Contains(err.Error(), "initrd") || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("checkFiles error = %v, want missing initrd and a shared dir that is a file", err)
	}
}

func TestIsELF(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		content string
		want    bool
	}{
		"vmlinux": {"\x7fELF\x02\x01", true},
		"bzImage": {"MZ\x00\x00 HdrS", false},
		"short":   {"\x7f", false},
		"empty":   {"", false},
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := isELF(p); err != nil || got != tc.want {
			t.Errorf("isELF(%s) = %v, %v; want %v", name, got, err, tc.want)
		}
	}
}

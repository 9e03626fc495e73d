package qemu

import (
	"net"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// baseConfig is a valid config with its defaults applied.
func baseConfig(machine string) hypervisor.VMConfig {
	return hypervisor.VMConfig{
		ID:          "sb1",
		Dir:         "/run/cocoon/sandboxes/sb1",
		Binary:      DefaultBinary,
		Machine:     machine,
		Accelerator: hypervisor.TCG,
		VCPUs:       1,
		MemoryMiB:   2048,
		Kernel:      "/usr/share/cocoon/vmlinux",
		Initrd:      "/usr/share/cocoon/initrd.img",
		ConsoleLog:  "/run/cocoon/sandboxes/sb1/console.log",
		AgentSocket: "/run/cocoon/sandboxes/sb1/agent.sock",
	}
}

// withVirtioFS gives c a virtio-fs share served by a daemon's socket.
func withVirtioFS(c hypervisor.VMConfig) hypervisor.VMConfig {
	c.SharedDirs = []hypervisor.SharedDir{{
		Tag:      "cocoon-share",
		HostPath: c.Dir + "/shared",
		Socket:   c.Dir + "/virtiofsd.sock",
	}}
	return c
}

var baseFeatures = Features{KernelELF: true, TSCkHz: 2445404, Sandbox: true, QBoot: "/usr/share/qemu/qboot.rom"}

func TestCommandLineFull(t *testing.T) {
	tests := map[string]struct {
		cfg  hypervisor.VMConfig
		f    Features
		want []string
	}{
		"microvm tcg": {
			cfg: baseConfig(MachineMicroVM),
			f:   baseFeatures,
			want: []string{
				"-name", "sb1",
				"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
				"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
				"-M", "microvm,rtc=on,pit=off", "-bios", "/usr/share/qemu/qboot.rom",
				"-accel", "tcg,tb-size=256", "-cpu", "qemu64,+arat",
				"-smp", "1", "-m", "2048",
				"-kernel", "/usr/share/cocoon/vmlinux",
				"-initrd", "/usr/share/cocoon/initrd.img",
				"-append", "console=ttyS0 panic=1 reboot=t noreplace-smp quiet tsc=reliable tsc_early_khz=2445404",
				"-chardev", "file,id=console,path=/run/cocoon/sandboxes/sb1/console.log",
				"-serial", "chardev:console",
				"-device", "virtio-serial-device,id=serial0",
				"-chardev", "socket,id=agent,path=/run/cocoon/sandboxes/sb1/agent.sock,server=on,wait=off",
				"-device", "virtserialport,bus=serial0.0,chardev=agent,name=agent.channel.0",
				"-device", "virtio-rng-device,id=rng0",
				"-qmp", "unix:/run/cocoon/sandboxes/sb1/qmp.sock,server=on,wait=off",
				"-pidfile", "/run/cocoon/sandboxes/sb1/qemu.pid",
			},
		},
		"microvm tcg virtio-fs": {
			cfg: withVirtioFS(baseConfig(MachineMicroVM)),
			f:   baseFeatures,
			want: []string{
				"-name", "sb1",
				"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
				"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
				"-M", "microvm,rtc=on,pit=off,memory-backend=mem", "-bios", "/usr/share/qemu/qboot.rom",
				"-global", "virtio-mmio.force-legacy=false",
				"-accel", "tcg,tb-size=256", "-cpu", "qemu64,+arat",
				"-smp", "1", "-m", "2048",
				"-object", "memory-backend-memfd,id=mem,size=2048M,share=on",
				"-kernel", "/usr/share/cocoon/vmlinux",
				"-initrd", "/usr/share/cocoon/initrd.img",
				"-append", "console=ttyS0 panic=1 reboot=t noreplace-smp quiet tsc=reliable tsc_early_khz=2445404",
				"-chardev", "file,id=console,path=/run/cocoon/sandboxes/sb1/console.log",
				"-serial", "chardev:console",
				"-device", "virtio-serial-device,id=serial0",
				"-chardev", "socket,id=agent,path=/run/cocoon/sandboxes/sb1/agent.sock,server=on,wait=off",
				"-device", "virtserialport,bus=serial0.0,chardev=agent,name=agent.channel.0",
				"-chardev", "socket,id=vfs0,path=/run/cocoon/sandboxes/sb1/virtiofsd.sock",
				"-device", "vhost-user-fs-device,id=fs0,chardev=vfs0,tag=cocoon-share,queue-size=1024",
				"-device", "virtio-rng-device,id=rng0",
				"-qmp", "unix:/run/cocoon/sandboxes/sb1/qmp.sock,server=on,wait=off",
				"-pidfile", "/run/cocoon/sandboxes/sb1/qemu.pid",
			},
		},
		"q35 tcg vmlinux": {
			cfg: baseConfig(MachineQ35),
			f:   baseFeatures,
			want: []string{
				"-name", "sb1",
				"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
				"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
				"-M", "q35,sata=off,smbus=off,vmport=off",
				"-bios", "/usr/share/qemu/qboot.rom",
				"-accel", "tcg,tb-size=256", "-cpu", "qemu64,+arat",
				"-smp", "1", "-m", "2048",
				"-kernel", "/usr/share/cocoon/vmlinux",
				"-initrd", "/usr/share/cocoon/initrd.img",
				"-append", "console=ttyS0 panic=1 reboot=t noreplace-smp quiet tsc=reliable",
				"-chardev", "file,id=console,path=/run/cocoon/sandboxes/sb1/console.log",
				"-serial", "chardev:console",
				"-device", "virtio-serial-pci,id=serial0",
				"-chardev", "socket,id=agent,path=/run/cocoon/sandboxes/sb1/agent.sock,server=on,wait=off",
				"-device", "virtserialport,bus=serial0.0,chardev=agent,name=agent.channel.0",
				"-device", "virtio-rng-pci,id=rng0",
				"-qmp", "unix:/run/cocoon/sandboxes/sb1/qmp.sock,server=on,wait=off",
				"-pidfile", "/run/cocoon/sandboxes/sb1/qemu.pid",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := CommandLine(tc.cfg, tc.f)
			if err != nil {
				t.Fatalf("CommandLine: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("CommandLine:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestCommandLineVariants(t *testing.T) {
	tests := map[string]struct {
		machine string
		edit    func(*hypervisor.VMConfig, *Features)
		// want are argument sequences that must appear in order.
		want [][]string
		// absent are arguments or argument prefixes that must not appear.
		absent []string
	}{
		"microvm vsock without serial": {
			machine: MachineMicroVM,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				c.AgentSocket = ""
				c.VsockCID = 3
			},
			want:   [][]string{{"-device", "vhost-vsock-device,id=vsock0,guest-cid=3"}},
			absent: []string{"virtio-serial-device,id=serial0", "virtserialport"},
		},
		"q35 vsock and serial": {
			machine: MachineQ35,
			edit:    func(c *hypervisor.VMConfig, _ *Features) { c.VsockCID = 1234 },
			want: [][]string{
				{"-device", "virtio-serial-pci,id=serial0"},
				{"-device", "vhost-vsock-pci,id=vsock0,guest-cid=1234"},
			},
		},
		"microvm nics": {
			machine: MachineMicroVM,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				c.NICs = []hypervisor.NIC{
					{MAC: mac("02:00:c0:00:02:02"), Tap: os.Stdin, MTU: 1400},
					{MAC: mac("02:00:c0:00:02:03"), Tap: os.Stdin},
				}
			},
			want: [][]string{
				{"-netdev", "tap,id=net0,fd=3"},
				{"-device", "virtio-net-device,id=nic0,netdev=net0,mac=02:00:c0:00:02:02,host_mtu=1400"},
				{"-netdev", "tap,id=net1,fd=4"},
				{"-device", "virtio-net-device,id=nic1,netdev=net1,mac=02:00:c0:00:02:03"},
			},
			absent: []string{"vhost=on", "mq=on", "virtio-net-pci"},
		},
		"q35 nic": {
			machine: MachineQ35,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				c.NICs = []hypervisor.NIC{{MAC: mac("02:00:c0:00:02:02"), Tap: os.Stdin, MTU: 9000}}
			},
			want: [][]string{
				{"-netdev", "tap,id=net0,fd=3"},
				{"-device", "virtio-net-pci,id=nic0,netdev=net0,mac=02:00:c0:00:02:02,host_mtu=9000"},
			},
		},
		"no nic by default": {
			machine: MachineMicroVM,
			absent:  []string{"-netdev", "virtio-net"},
		},
		"no vsock by default": {
			machine: MachineQ35,
			absent:  []string{"vhost-vsock"},
		},
		"q35 9p shares": {
			machine: MachineQ35,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				c.SharedDirs = []hypervisor.SharedDir{
					{Tag: "cocoon", HostPath: "/run/cocoon/sandboxes/sb1/shared"},
					{Tag: "ro", HostPath: "/srv/a,b", ReadOnly: true},
				}
			},
			want: [][]string{
				{"-fsdev", "local,id=fsdev0,path=/run/cocoon/sandboxes/sb1/shared,security_model=none,multidevs=remap"},
				{"-device", "virtio-9p-pci,id=fs0,fsdev=fsdev0,mount_tag=cocoon"},
				{"-fsdev", "local,id=fsdev1,path=/srv/a,,b,security_model=none,multidevs=remap,readonly=on"},
				{"-device", "virtio-9p-pci,id=fs1,fsdev=fsdev1,mount_tag=ro"},
			},
		},
		"microvm 9p share": {
			machine: MachineMicroVM,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				c.SharedDirs = []hypervisor.SharedDir{{Tag: "cocoon", HostPath: "/x"}}
			},
			want: [][]string{{"-device", "virtio-9p-device,id=fs0,fsdev=fsdev0,mount_tag=cocoon"}},
		},
		"q35 virtio-fs": {
			machine: MachineQ35,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				*c = withVirtioFS(*c)
				c.MemoryMiB = 512
			},
			want: [][]string{
				{"-M", "q35,sata=off,smbus=off,vmport=off,memory-backend=mem"},
				{"-m", "512", "-object", "memory-backend-memfd,id=mem,size=512M,share=on"},
				{"-chardev", "socket,id=vfs0,path=/run/cocoon/sandboxes/sb1/virtiofsd.sock"},
				{"-device", "vhost-user-fs-pci,id=fs0,chardev=vfs0,tag=cocoon-share,queue-size=1024"},
			},
			absent: []string{"-fsdev", "virtio-9p", "force-legacy"},
		},
		"9p keeps private memory": {
			machine: MachineMicroVM,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				c.SharedDirs = []hypervisor.SharedDir{{Tag: "cocoon", HostPath: "/x"}}
			},
			absent: []string{"memory-backend", "share=on", "vhost-user-fs", "force-legacy"},
		},
		"debug keeps kernel messages": {
			machine: MachineMicroVM,
			edit:    func(c *hypervisor.VMConfig, _ *Features) { c.Debug = true },
			want:    [][]string{{"-append", "console=ttyS0 panic=1 reboot=t noreplace-smp tsc=reliable tsc_early_khz=2445404"}},
		},
		"caller params come last": {
			machine: MachineQ35,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				c.KernelParams = []string{"init=/sbin/agent", "panic=5"}
			},
			want: [][]string{{"-append", "console=ttyS0 panic=1 reboot=t noreplace-smp quiet tsc=reliable init=/sbin/agent panic=5"}},
		},
		"kvm uses the host cpu": {
			machine: MachineMicroVM,
			edit:    func(c *hypervisor.VMConfig, _ *Features) { c.Accelerator = hypervisor.KVM },
			want: [][]string{
				{"-accel", "kvm", "-cpu", "host"},
				{"-append", "console=ttyS0 panic=1 reboot=t noreplace-smp quiet"},
			},
			absent: []string{"tsc_early_khz", "tsc=reliable"},
		},
		"tcg keeps the default cpu, with an always running apic timer": {
			machine: MachineQ35,
			want:    [][]string{{"-accel", "tcg,tb-size=256", "-cpu", "qemu64,+arat"}},
		},
		"q35 bzImage uses the default bios": {
			machine: MachineQ35,
			edit:    func(_ *hypervisor.VMConfig, f *Features) { f.KernelELF = false },
			absent:  []string{"-bios"},
		},
		"microvm without qboot": {
			machine: MachineMicroVM,
			edit:    func(_ *hypervisor.VMConfig, f *Features) { f.QBoot = "" },
			absent:  []string{"-bios"},
		},
		"no sandbox support": {
			machine: MachineQ35,
			edit:    func(_ *hypervisor.VMConfig, f *Features) { f.Sandbox = false },
			absent:  []string{"-sandbox"},
		},
		"no console log": {
			machine: MachineQ35,
			edit:    func(c *hypervisor.VMConfig, _ *Features) { c.ConsoleLog = "" },
			want:    [][]string{{"-serial", "null"}},
			absent:  []string{"file,id=console"},
		},
		"no initrd": {
			machine: MachineQ35,
			edit:    func(c *hypervisor.VMConfig, _ *Features) { c.Initrd = "" },
			absent:  []string{"-initrd"},
		},
		"smp and memory": {
			machine: MachineQ35,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				c.VCPUs = 2
				c.MemoryMiB = 512
			},
			want: [][]string{{"-smp", "2", "-m", "512"}},
		},
		"commas are escaped": {
			machine: MachineQ35,
			edit: func(c *hypervisor.VMConfig, _ *Features) {
				c.ID = "a,b"
				c.Dir = "/run/x,y"
				c.ConsoleLog = "/run/x,y/console.log"
				c.AgentSocket = "/run/x,y/agent.sock"
			},
			want: [][]string{
				{"-name", "a,,b"},
				{"-chardev", "file,id=console,path=/run/x,,y/console.log"},
				{"-chardev", "socket,id=agent,path=/run/x,,y/agent.sock,server=on,wait=off"},
				{"-qmp", "unix:/run/x,,y/qmp.sock,server=on,wait=off"},
				{"-pidfile", "/run/x,y/qemu.pid"},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, f := baseConfig(tc.machine), baseFeatures
			if tc.edit != nil {
				tc.edit(&cfg, &f)
			}
			got, err := CommandLine(cfg, f)
			if err != nil {
				t.Fatalf("CommandLine: %v", err)
			}
			for _, seq := range tc.want {
				if !hasSequence(got, seq) {
					t.Errorf("missing %q in %q", seq, got)
				}
			}
			for _, a := range tc.absent {
				for _, g := range got {
					if strings.Contains(g, a) {
						t.Errorf("unexpected %q in %q", a, got)
					}
				}
			}
		})
	}
}

func TestCommandLineErrors(t *testing.T) {
	tests := map[string]struct {
		cfg  hypervisor.VMConfig
		f    Features
		want string
	}{
		"microvm tcg without tsc": {
			cfg:  baseConfig(MachineMicroVM),
			f:    Features{},
			want: "host tsc rate",
		},
		"virtio-fs socket relative": {
			cfg: func() hypervisor.VMConfig {
				c := withVirtioFS(baseConfig(MachineQ35))
				c.SharedDirs[0].Socket = "virtiofsd.sock"
				return c
			}(),
			f:    baseFeatures,
			want: `shared dir "cocoon-share" socket "virtiofsd.sock" is not an absolute path`,
		},
		"virtio-fs socket too long": {
			cfg: func() hypervisor.VMConfig {
				c := withVirtioFS(baseConfig(MachineQ35))
				c.SharedDirs[0].Socket = "/" + strings.Repeat("s", 120)
				return c
			}(),
			f:    baseFeatures,
			want: "socket path",
		},
		"virtio-fs read-only": {
			cfg: func() hypervisor.VMConfig {
				c := withVirtioFS(baseConfig(MachineQ35))
				c.SharedDirs[0].ReadOnly = true
				return c
			}(),
			f:    baseFeatures,
			want: "read-only is the virtio-fs daemon's option",
		},
		"invalid config": {
			cfg:  hypervisor.VMConfig{},
			f:    baseFeatures,
			want: "invalid vm config",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := CommandLine(tc.cfg, tc.f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CommandLine error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestOwnedFiles(t *testing.T) {
	cfg := baseConfig(MachineQ35)
	cfg.Dir = "/run/x,y"
	cfg.ConsoleLog = "/run/x,y/console.log"
	cfg.AgentSocket = "/run/x,y/agent.sock"
	args, err := CommandLine(cfg, baseFeatures)
	if err != nil {
		t.Fatal(err)
	}
	got := ownedFiles(args, cfg.Dir)
	want := []string{"/run/x,y/agent.sock", "/run/x,y/qmp.sock", "/run/x,y/qemu.pid"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ownedFiles = %q, want %q", got, want)
	}
	if !isQEMUFor(append([]string{"qemu"}, args...), cfg.Dir) {
		t.Errorf("isQEMUFor(own args) = false")
	}
	if isQEMUFor(append([]string{"qemu"}, args...), "/run/other") {
		t.Errorf("isQEMUFor(other dir) = true")
	}
	// Files outside the directory are never ours to remove.
	if got := ownedFiles([]string{"-pidfile", "/etc/passwd"}, cfg.Dir); len(got) != 0 {
		t.Errorf("ownedFiles outside dir = %q", got)
	}
}

func TestSplitOptions(t *testing.T) {
	tests := map[string][]string{
		"a":              {"a"},
		"a,b":            {"a", "b"},
		"path=/x,,y,z=1": {"path=/x,y", "z=1"},
		"":               {""},
		",,":             {","},
	}
	for in, want := range tests {
		if got := splitOptions(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitOptions(%q) = %q, want %q", in, got, want)
		}
		if got := splitOptions(escape(in)); len(got) != 1 || got[0] != in {
			t.Errorf("splitOptions(escape(%q)) = %q", in, got)
		}
	}
}

// hasSequence says whether seq appears in args as consecutive elements.
func hasSequence(args, seq []string) bool {
	for i := 0; i+len(seq) <= len(args); i++ {
		if reflect.DeepEqual(args[i:i+len(seq)], seq) {
			return true
		}
	}
	return false
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

package sandbox

import (
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The throwaway container of WarmUp.
const (
	// warmupID is its ID.
	warmupID = "cocoon-warmup"
	// warmupRoot is its root file system, in the guest's initramfs (the
	// share is not mounted before attach): empty, and no container ever
	// sees it.
	warmupRoot = "/tmp"
	// warmupExe is where the agent's binary (the initramfs's /init) is
	// bound in it: runc init checks that the process's program exists
	// before waiting to be started, which the throwaway container never is.
	warmupExe = "/warmup"
	// restoreEntropy is how many random bytes a restored guest gets.
	restoreEntropy = 64
)

// warmupSpecJSON is the throwaway container: the namespaces, mounts and
// masked paths of a typical container (runc spec's), on the guest's /tmp.
func warmupSpecJSON() ([]byte, error) {
	ro := func(dst, typ, src string, opts ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: typ, Source: src, Options: opts}
	}
	return json.Marshal(&specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: warmupRoot},
		Process: &specs.Process{
			Args: []string{warmupExe},
			Cwd:  "/",
			Env:  []string{"PATH=/"},
		},
		Hostname: warmupID,
		Mounts: []specs.Mount{
			ro("/proc", "proc", "proc"),
			ro("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
			ro("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"),
			ro("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
			ro("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
			ro("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
			ro("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
			ro(warmupExe, "bind", "/init", "rbind", "ro"),
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	})
}

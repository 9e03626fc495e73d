package oci

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Annotations of the features document that name cocoon's build and what
// isolates a container.
const (
	AnnotationVersion = "io.github.cocoon-containers.cocoon.version"
	AnnotationVM      = "io.github.cocoon-containers.cocoon.vm"
)

// mountOptions are the mount options a container's spec may use: those of
// the guest's runtime (runc's libcontainer, whose KnownMountOptions a test
// compares with this list). Bind sources cross into the VM through the
// share with their submounts, so the recursive attributes ("rro", ...)
// apply to the whole tree, as with runc; "ro" and "rro" make the host's
// side of the share read-only too. ID-mapped mounts are not offered: the
// guest's shared file systems cannot be ID-mapped.
var mountOptions = []string{
	"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
	"iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime",
	"noexec", "noiversion", "nolazytime", "nomand", "norelatime",
	"nostrictatime", "nosuid", "nosymfollow", "private", "ratime", "rbind",
	"rdev", "rdiratime", "relatime", "remount", "rexec", "rnoatime", "rnodev",
	"rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime", "rnosuid",
	"rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared",
	"rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw",
	"shared", "silent", "slave", "strictatime", "suid", "symfollow", "sync",
	"tmpcopyup", "unbindable",
}

// capabilities are the capabilities a container may hold in the guest
// (the guest kernel's, 6.1).
var capabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
	"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// Features is the runtime-spec features document of cocoon at version
// (what `cocoon-runtime features` prints and the containerd shim's -info
// carries). Containers run in a guest whose runtime is runc's
// libcontainer, so the Linux features are runc's but for what cannot
// cross into a VM: host security labels (AppArmor, SELinux), ID-mapped
// mounts and the host's network devices.
func Features(version string) *features.Features {
	yes, no := true, false
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  slices.Clone(mountOptions),
		Linux: &features.Linux{
			Namespaces:      []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"},
			Capabilities:    slices.Clone(capabilities),
			Cgroup:          &features.Cgroup{V1: &yes, V2: &yes, Systemd: &no, SystemdUser: &no},
			Seccomp:         &features.Seccomp{Enabled: &yes},
			Apparmor:        &features.Apparmor{Enabled: &no},
			Selinux:         &features.Selinux{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
			NetDevices:      &features.NetDevices{Enabled: &no},
		},
		Annotations: map[string]string{
			AnnotationVersion: version,
			AnnotationVM:      "one QEMU VM per container, or per pod with CRI annotations",
		},
	}
}

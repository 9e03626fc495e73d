package main

import (
	"encoding/json"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

// features is the shape of runc features' output (the runtime-spec's
// features document).
type features struct {
	OCIVersionMin string            `json:"ociVersionMin"`
	OCIVersionMax string            `json:"ociVersionMax"`
	Hooks         []string          `json:"hooks"`
	MountOptions  []string          `json:"mountOptions"`
	Linux         linuxFeatures     `json:"linux"`
	Annotations   map[string]string `json:"annotations"`
}

type linuxFeatures struct {
	Namespaces   []string        `json:"namespaces"`
	Capabilities []string        `json:"capabilities"`
	Cgroup       map[string]bool `json:"cgroup"`
	Seccomp      map[string]any  `json:"seccomp"`
	Apparmor     map[string]bool `json:"apparmor"`
	Selinux      map[string]bool `json:"selinux"`
}

var featuresCommand = &cli.Command{
	Name:  "features",
	Usage: "show the enabled features",
	Description: `features prints what the runtime supports, in the runtime-spec's features
format. Containers run in a guest whose runtime is runc's libcontainer, so
the Linux features are runc's; host security labels (AppArmor, SELinux)
do not cross into the VM.`,
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, true); err != nil {
			return err
		}
		f := features{
			OCIVersionMin: "1.0.0",
			OCIVersionMax: specs.Version,
			Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
			MountOptions: []string{"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
				"lazytime", "mand", "noatime", "nodev", "nodiratime", "noexec", "nolazytime", "nomand",
				"norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro",
				"rprivate", "rshared", "rslave", "rw", "shared", "slave", "strictatime", "suid", "sync"},
			Linux: linuxFeatures{
				Namespaces: []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"},
				Capabilities: []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
					"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
					"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
					"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
					"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
					"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
					"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
					"CAP_CHECKPOINT_RESTORE"},
				Cgroup:   map[string]bool{"v1": true, "v2": true, "systemd": false, "systemdUser": false},
				Seccomp:  map[string]any{"enabled": true},
				Apparmor: map[string]bool{"enabled": false},
				Selinux:  map[string]bool{"enabled": false},
			},
			Annotations: map[string]string{
				"io.github.cocoon-containers.cocoon.version": version,
				"io.github.cocoon-containers.cocoon.vm":      "one QEMU VM per container, or per pod with CRI annotations",
			},
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "    ")
		return enc.Encode(f)
	},
}

package container

import (
	"fmt"
	"path"
	"strconv"

	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/configs/validate"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// rlimitTypes maps the spec's rlimit names to resource numbers (runc's
// rlimit_linux.go, which lives in runc's main package).
var rlimitTypes = map[string]int{
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
}

func convertRlimits(in []specs.POSIXRlimit) ([]configs.Rlimit, error) {
	var out []configs.Rlimit
	for _, rl := range in {
		t, ok := rlimitTypes[rl.Type]
		if !ok {
			return nil, invalidf("unknown rlimit type %q", rl.Type)
		}
		out = append(out, configs.Rlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	return out, nil
}

// newConfig converts a checked spec into libcontainer's configuration with
// runc's specconv, as runc create does, with the guest's cgroup path.
func (m *Manager) newConfig(id string, spec *specs.Spec) (*configs.Config, error) {
	cgroupPath := path.Join(m.cfg.CgroupParent, id)
	if p := spec.Linux.CgroupsPath; p != "" && p != cgroupPath {
		m.cfg.Log.WithFields(logrus.Fields{"container": id, "spec": p, "guest": cgroupPath}).
			Debug("using the guest's cgroup path instead of the spec's")
	}
	spec.Linux.CgroupsPath = cgroupPath
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:  id,
		NoPivotRoot: m.cfg.NoPivotRoot,
		Spec:        spec,
	})
	if err != nil {
		return nil, fmt.Errorf("converting spec: %w", errSpecconv(err))
	}
	// Exec'd processes that set no rlimits of their own get the
	// container's (runc passes them on the init process only), and the
	// agent's for what the spec leaves out (see ownRlimits).
	rls, err := convertRlimits(spec.Process.Rlimits)
	if err != nil {
		return nil, err
	}
	config.Rlimits = withInherited(rls, m.inherited)
	// The container's RLIMIT_AS, which exec'd processes get, is the init
	// process's: Create takes it from newProcess.
	if config.Rlimits, _, err = deferAddressSpace(config.Rlimits); err != nil {
		return nil, err
	}
	dropBindData(config, m.cfg.Log.WithField("container", id))
	fifoWithoutNumbers(config)
	bindSysfs(config, m.cfg.Log.WithField("container", id))
	if err := validate.Validate(config); err != nil {
		return nil, fmt.Errorf("checking spec: %w: %w", ErrInvalidArgument, err)
	}
	return config, nil
}

// newProcess builds libcontainer's Process from an OCI process, as runc's
// newProcess does, and returns its RLIMIT_AS apart (nil when it sets none):
// the caller applies it once the process is started (see
// deferAddressSpace). A process that sets rlimits gets inherited for the
// resources it leaves out; one that sets none gets the container's.
func newProcess(p *specs.Process, inherited []configs.Rlimit) (*libcontainer.Process, *unix.Rlimit, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		NoNewPrivileges: &p.NoNewPrivileges,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
		LogLevel:        strconv.Itoa(int(logrus.GetLevel())),
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding:    c.Bounding,
			Effective:   c.Effective,
			Inheritable: c.Inheritable,
			Permitted:   c.Permitted,
			Ambient:     c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	rls, err := convertRlimits(p.Rlimits)
	if err != nil {
		return nil, nil, err
	}
	if len(rls) > 0 {
		// libcontainer uses them instead of the container's, not on top.
		lp.Rlimits = withInherited(rls, inherited)
	}
	var as *unix.Rlimit
	if lp.Rlimits, as, err = deferAddressSpace(lp.Rlimits); err != nil {
		return nil, nil, err
	}
	if lp.CPUAffinity, err = configs.ConvertCPUAffinity(p.ExecCPUAffinity); err != nil {
		return nil, nil, invalidf("process.execCPUAffinity: %v", err)
	}
	return lp, as, nil
}

// dropBindData clears the file system options of bind mounts, which
// libcontainer's validation refuses ("bind mounts cannot have any
// filesystem-specific options applied"): runc 1.1 passed them to mount(2),
// which ignores data on MS_BIND, so a spec such as {"options": ["bind",
// "mode=755", "size=1k"]} mounts there and must here too.
func dropBindData(config *configs.Config, log *logrus.Entry) {
	for _, m := range config.Mounts {
		if m.IsBind() && m.Data != "" {
			log.WithFields(logrus.Fields{"destination": m.Destination, "options": m.Data}).
				Debug("ignoring file system options of a bind mount, as runc 1.1 does")
			m.Data = ""
		}
	}
}

// fifoWithoutNumbers clears the major and minor numbers of the FIFOs in
// linux.devices. A FIFO has none: mknod(2) ignores them and the node reads
// 0:0, which libcontainer 1.4 then refuses as a mismatch ("new p device
// inode ... has incorrect major:minor: 0:0 doesn't match expected 8:666").
// The runtime spec requires numbers of every device type but p, and runc
// 1.1 makes such a FIFO, so they are dropped rather than refused. The
// device is copied: specconv shares its default devices between
// configurations.
func fifoWithoutNumbers(config *configs.Config) {
	for i, d := range config.Devices {
		if d.Type == devices.FifoDevice && (d.Major != 0 || d.Minor != 0) {
			fifo := *d
			fifo.Major, fifo.Minor = 0, 0
			config.Devices[i] = &fifo
		}
	}
}

// bindSysfs replaces the sysfs mounts of a container that has a user
// namespace but no network namespace with read-only bind mounts of the
// guest's /sys, as runc's rootless specs do: the kernel mounts sysfs only
// for the owner of the network namespace. Such a container is the usual
// case here, not a corner: the host drops the spec's network namespace, the
// container sharing the guest's network (see checkSpec). The guest's /sys is
// what a sysfs mounted in the guest's network namespace would show.
func bindSysfs(config *configs.Config, log *logrus.Entry) {
	if !config.Namespaces.Contains(configs.NEWUSER) || config.Namespaces.Contains(configs.NEWNET) {
		return
	}
	for _, m := range config.Mounts {
		if m.Device != "sysfs" {
			continue
		}
		log.WithField("destination", m.Destination).
			Debug("user namespace without a network namespace: bind-mounting the guest's /sys instead of mounting sysfs")
		m.Source, m.Device = "/sys", "bind"
		m.Flags = (m.Flags | unix.MS_BIND | unix.MS_REC) &^ unix.MS_REMOUNT
		m.Data = ""
	}
}

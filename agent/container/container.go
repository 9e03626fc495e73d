package container

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Container is one container of the guest.
type Container struct {
	id  string
	m   *Manager
	lc  *libcontainer.Container
	cgm cgroups.Manager // the container's cgroup: OOM counts, signalling all
	log *logrus.Entry
	// addressSpace is the container's RLIMIT_AS (nil: none), which the
	// agent sets itself on the init process and on the exec'd processes
	// that get the container's rlimits (see deferAddressSpace).
	addressSpace *unix.Rlimit
	// local are the guest-local mounts made for the container; nil when
	// none.
	local *localMounts

	mu      sync.Mutex
	init    *Process
	execs   map[string]*Process
	removed bool
}

// ID returns the container's ID.
func (c *Container) ID() string { return c.id }

// Init returns the container's init process.
func (c *Container) Init() *Process { return c.init }

// Status returns libcontainer's view of the container: created, running,
// paused or stopped.
func (c *Container) Status() (libcontainer.Status, error) {
	return c.lc.Status()
}

// Process returns the process execID; "" is the init process.
func (c *Container) Process(execID string) (*Process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.execs[execID]
	if p == nil {
		return nil, errorf(ErrNotFound, "process %s of container %s", execID, c.id)
	}
	return p, nil
}

// startProcess starts lp in the container with its stdio, inside the
// reaper's Start, and watches for its exit. An exec'd process gets its
// RLIMIT_AS as (when not nil) once it runs its program.
func (c *Container) startProcess(execID string, lp *libcontainer.Process, as *unix.Rlimit, terminal bool, stdio StdioConfig) (*Process, error) {
	log := c.log
	if execID != "" {
		log = log.WithField("exec", execID)
	}
	var (
		pio *processIO
		err error
	)
	if terminal {
		pio, err = newTerminalIO(lp, log)
	} else {
		uid, gid, ierr := c.hostRoot()
		if ierr != nil {
			return nil, ierr
		}
		pio, err = newPipeIO(lp, stdio, uid, gid, log)
	}
	if err != nil {
		return nil, err
	}
	oomBase, _ := c.cgm.OOMKillCount() // 0 if the cgroup is not there yet
	exits, err := c.m.cfg.Reaper.Start(func() (int, error) {
		if err := c.lc.Start(lp); err != nil {
			return 0, err
		}
		return lp.Pid()
	})
	if err == nil && as != nil && execID != "" {
		// The init process gets it in Start (see deferAddressSpace).
		pid, _ := lp.Pid()
		if lerr := setAddressSpaceAfterExec(pid, as); lerr != nil {
			_ = lp.Signal(unix.SIGKILL)
			err = lerr
		}
	}
	if ierr := pio.afterStart(err == nil); ierr != nil && err == nil {
		// The process runs but its terminal is lost: kill it (its exit
		// status goes to the buffered channel nobody reads).
		_ = lp.Signal(unix.SIGKILL)
		err = ierr
	}
	if err != nil {
		pio.close()
		return nil, fmt.Errorf("starting process: %w", err)
	}
	pid, _ := lp.Pid()
	p := &Process{
		c:      c,
		execID: execID,
		pid:    pid,
		lp:     lp,
		io:     pio,
		log:    log.WithField("pid", pid),
		exited: make(chan struct{}),
	}
	go p.watch(exits, oomBase)
	return p, nil
}

// hostRoot returns the host IDs of the container's root user, who owns the
// stdio pipes.
func (c *Container) hostRoot() (uid, gid int, err error) {
	config := c.lc.Config()
	if uid, err = config.HostRootUID(); err != nil {
		return 0, 0, fmt.Errorf("finding the container's root: %w", err)
	}
	if gid, err = config.HostRootGID(); err != nil {
		return 0, 0, fmt.Errorf("finding the container's root: %w", err)
	}
	return uid, gid, nil
}

// Stats returns the container's cgroup statistics, in the form runc events
// --stats prints them.
func (c *Container) Stats(ctx context.Context) (*Stats, error) {
	st, err := c.lc.Stats()
	if err != nil {
		return nil, fmt.Errorf("reading stats of container %s: %w", c.id, stateError(err))
	}
	return convertStats(st), nil
}

// OOMKillCount is how many processes the kernel's OOM killer ended in the
// container's memory cgroup.
func (c *Container) OOMKillCount() (uint64, error) {
	n, err := c.cgm.OOMKillCount()
	if err != nil {
		return 0, fmt.Errorf("reading the OOM kill count of container %s: %w", c.id, err)
	}
	return n, nil
}

// Processes lists the processes in the container's cgroup.
func (c *Container) Processes(ctx context.Context) ([]ProcessInfo, error) {
	pids, err := c.lc.Processes()
	if err != nil {
		return nil, fmt.Errorf("listing processes of container %s: %w", c.id, err)
	}
	return readProcesses("/proc", pids), nil
}

package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/internal/mountns"
	"github.com/cocoon-containers/cocoon/internal/proc"
	"github.com/cocoon-containers/cocoon/network"
	"github.com/cocoon-containers/cocoon/relay"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// RelayName is the per-process relay's binary: cocoon-runtime starts one
// for every container process, and its PID is the process's on the host.
const RelayName = "cocoon-relay"

// RelayOptions are what cocoon-runtime passes on to the relays it starts.
type RelayOptions struct {
	// Path is the relay's binary; empty: next to this executable, else in
	// $PATH.
	Path string
	// LogPath and LogFormat are cocoon-runtime's --log and --log-format.
	LogPath, LogFormat string
	// Debug is --debug.
	Debug bool
}

// StdioMode says where a process's stdio goes, decided before the process
// exists in the guest: what it is created with depends on it.
type StdioMode struct {
	// Terminal: the process has a terminal (process.terminal).
	Terminal bool
	// ConsoleSocket receives the pty master (terminal only).
	ConsoleSocket string
	// Foreground: the runtime waits for the process (run and exec
	// without --detach); with a terminal and no console socket it relays
	// its own stdio to the pty master, as runc does.
	Foreground bool
}

// NewStdioMode checks the combination as runc does.
func NewStdioMode(terminal bool, consoleSocket string, detach bool) (StdioMode, error) {
	switch {
	case consoleSocket != "" && !terminal:
		return StdioMode{}, errors.New("cannot use console socket if runc will not detach or allocate tty")
	case terminal && detach && consoleSocket == "":
		return StdioMode{}, errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if consoleSocket != "" {
		abs, err := filepath.Abs(consoleSocket)
		if err != nil {
			return StdioMode{}, fmt.Errorf("console socket: %w", err)
		}
		consoleSocket = abs
	}
	return StdioMode{Terminal: terminal, ConsoleSocket: consoleSocket, Foreground: !detach}, nil
}

// stdio is what the process is created with in the guest: the streams of
// this process's own stdio that are attached (a terminal process has one
// terminal stream instead).
func (m StdioMode) stdio() Stdio {
	if m.Terminal {
		return Stdio{}
	}
	c := relay.AttachedStdio(os.Stdin, os.Stdout, os.Stderr)
	return Stdio{Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr}
}

// setConsoleSize gives a process that gets a terminal in the foreground
// (run or exec on the caller's terminal, no console socket) the size of
// the caller's terminal from its start, as runc does, unless the spec sets
// one: the guest creates its pty with it, while a resize sent once the
// process runs comes late for a program that reads the size at once.
func (m StdioMode) setConsoleSize(p *specs.Process) {
	if !m.Terminal || !m.Foreground || m.ConsoleSocket != "" || p.ConsoleSize != nil {
		return
	}
	_ = control(os.Stdin, func(fd int) error {
		ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if err != nil || ws.Row == 0 || ws.Col == 0 {
			return err
		}
		p.ConsoleSize = &specs.Box{Height: uint(ws.Row), Width: uint(ws.Col)}
		return nil
	})
}

// RelayProcess is a started relay (cocoon-relay).
type RelayProcess struct {
	cmd *exec.Cmd
	// Pid is the relay's PID, which stands for the process on the host.
	Pid   int
	start uint64
	// master is the pty master that a foreground terminal relays; nil
	// otherwise.
	master *os.File
}

// relayConfig names the process a relay relays and how.
type relayConfig struct {
	sb          *sandbox.Sandbox
	containerID string
	execID      string
	mode        StdioMode
	// newNetNS starts the relay in a network namespace of its own: the
	// container's host-side one, which prestart hooks (Docker's
	// libnetwork-setkey) find through the container PID.
	newNetNS bool
	// netNS, when set, is the namespace that the sandbox made for the
	// container (sandbox.Sandbox.NetNS): the relay starts in it instead of
	// a new one, and its NIC is already in the VM.
	netNS string
}

// path finds the relay's binary.
func (o RelayOptions) path() (string, error) {
	if o.Path != "" {
		return o.Path, nil
	}
	return RelayPath()
}

// RelayPath finds the relay's binary: next to this executable, else in
// $PATH.
func RelayPath() (string, error) { return sandbox.HelperPath("", RelayName) }

// relayAddress returns the relay's flags that reach the agent of sb.
func relayAddress(sb *sandbox.Sandbox) []string {
	sock, cid := sb.AgentAddress()
	if sock == "" {
		return []string{"--vsock", fmt.Sprint(cid)}
	}
	return []string{"--proxy-socket", sock}
}

// startRelay starts the relay of a process that exists in the guest and
// returns once it has attached the process's streams. It runs in its own
// session, with the caller's stdio or a pty's slave as its controlling
// terminal; the pty's master goes to the console socket (then is closed
// here) or, in the foreground, stays in RelayProcess.master. On failure
// nothing is left running.
func startRelay(ctx context.Context, opts RelayOptions, scale time.Duration, o relayConfig) (_ *RelayProcess, retErr error) {
	path, err := opts.path()
	if err != nil {
		return nil, err
	}
	args := append([]string{RelayName}, relayAddress(o.sb)...)
	args = append(args, "--container", o.containerID, "--ready-fd", "3",
		"--timeout-scale", strconv.Itoa(int(scale)))
	if o.execID != "" {
		args = append(args, "--exec", o.execID)
	}
	if opts.LogPath != "" {
		args = append(args, "--log", opts.LogPath, "--log-format", opts.LogFormat)
	}
	if opts.Debug {
		args = append(args, "--debug")
	}
	// A PID and a mount namespace of its own, whose /proc lists the relay
	// alone: what lists the processes of the container PID's /proc (podman
	// top) would list the host's. Its root is the container's root file
	// system on the host (the share's side of it): what works in the
	// container PID's mount namespace (podman cp into a running container)
	// would otherwise work on the host's /.
	hostRoot, _ := o.sb.Share().Rootfs(o.containerID)
	args = append(args, "--own-proc", "--root", hostRoot, "--alive-fd", "4")
	attr := &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS}
	if o.newNetNS && o.netNS == "" {
		attr.Cloneflags |= unix.CLONE_NEWNET
	}
	stdio := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	rp := &RelayProcess{}
	var slave *os.File
	if o.mode.Terminal {
		var master *os.File
		master, slave, err = openPty()
		if err != nil {
			return nil, err
		}
		defer slave.Close()
		rp.master = master
		if o.mode.Foreground && o.mode.ConsoleSocket == "" {
			// The relay reads its terminal's size when it starts.
			copySize(os.Stdin, master)
		}
		defer func() {
			if retErr != nil || o.mode.ConsoleSocket != "" {
				master.Close()
				rp.master = nil
			}
		}()
		stdio = []*os.File{slave, slave, slave}
		attr.Setctty, attr.Ctty = true, 0
		args = append(args, "--terminal")
	} else {
		s := o.mode.stdio()
		args = append(args, "--stdin="+strconv.FormatBool(s.Stdin),
			"--stdout="+strconv.FormatBool(s.Stdout), "--stderr="+strconv.FormatBool(s.Stderr))
	}
	ready, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting the relay: %w", err)
	}
	defer ready.Close()
	alive, aliveW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, fmt.Errorf("starting the relay: %w", err)
	}
	defer alive.Close()
	cmd := &exec.Cmd{
		Path:        path,
		Args:        args,
		Env:         []string{},
		Stdin:       stdio[0],
		Stdout:      stdio[1],
		Stderr:      stdio[2],
		SysProcAttr: attr,
	}
	extra := []*os.File{readyW, aliveW} // fds 3 and 4
	if o.execID == "" {
		// The container's memory cgroup on the host, fd 5: where the
		// relay mirrors the guest's OOM kill of the process.
		memcg, err := openMemoryCgroup(o.sb)
		if err != nil {
			readyW.Close()
			aliveW.Close()
			return nil, fmt.Errorf("starting the relay: %w", err)
		}
		if memcg != nil {
			defer memcg.Close()
			extra = append(extra, memcg)
			cmd.Args = append(cmd.Args, "--oom-cgroup-fd", "5")
		}
	}
	cmd.ExtraFiles = extra
	err = startInSandbox(cmd, o)
	readyW.Close()
	aliveW.Close()
	if err != nil {
		return nil, fmt.Errorf("starting the relay: %w", err)
	}
	rp.cmd, rp.Pid = cmd, cmd.Process.Pid
	defer func() {
		if retErr != nil {
			rp.Kill()
		}
	}()
	// Into the sandbox's host cgroup: what reads the container's cgroup
	// through its PID (the runc shim's stats, podman stats) reads the VM's.
	if err := o.sb.AddProcess(rp.Pid); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, ready); err != nil {
		return nil, err
	}
	if rp.start, err = StartTime(rp.Pid); err != nil {
		return nil, fmt.Errorf("the relay exited at once: %w", err)
	}
	if err := startGuards(path, o, opts, scale, alive); err != nil {
		return nil, err
	}
	if o.mode.ConsoleSocket != "" {
		if err := sendConsole(o.mode.ConsoleSocket, rp.master); err != nil {
			return nil, err
		}
	}
	// A relay that is not in the foreground is never waited for here, not
	// even in the background: a process that exits at once (docker exec
	// of cat) would be reaped by this runtime, and its status lost to the
	// caller's subreaper (containerd's shim), whose exec then hangs. Once
	// the runtime exits, the subreaper (or init) reaps it.
	return rp, nil
}

// startInSandbox starts the relay in the share's mount namespace, where
// its root (the container's root file system in the share) is mounted, and
// in the network namespace netNS when set.
func startInSandbox(cmd *exec.Cmd, o relayConfig) error {
	share, err := o.sb.ShareNamespace()
	if err != nil {
		return err
	}
	var netNS *network.Namespace
	if o.netNS != "" {
		// Opened here: a namespace pinned after the share's namespace
		// was made is not in it.
		if netNS, err = network.OpenNamespace(o.netNS); err != nil {
			return err
		}
		defer netNS.Close()
	}
	return mountns.Do(share, func() error {
		if netNS != nil {
			if err := netNS.Enter(); err != nil {
				return err
			}
		}
		return cmd.Start()
	})
}

// openMemoryCgroup opens the sandbox's memory cgroup directory on the
// host, nil when it has none.
func openMemoryCgroup(sb *sandbox.Sandbox) (*os.File, error) {
	dir, err := sb.MemoryCgroup()
	if err != nil || dir == "" {
		return nil, err
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the memory cgroup: %w", err)
	}
	return f, nil
}

// startGuards starts the relay's two guards in this PID namespace (the
// relay's dies with it) and in the sandbox's host cgroup. They are not
// waited for here, as the relay is not.
func startGuards(path string, o relayConfig, opts RelayOptions, scale time.Duration, alive *os.File) error {
	args := []string{RelayName, "--guard-fd", strconv.Itoa(relay.GuardFD), "--container", o.containerID,
		"--timeout-scale", strconv.Itoa(int(scale))}
	if o.execID != "" {
		args = append(args, "--exec", o.execID)
	}
	// After --container: relayPIDs takes the address followed by
	// --container for a relay's.
	args = append(args, relayAddress(o.sb)...)
	if opts.LogPath != "" {
		args = append(args, "--log", opts.LogPath, "--log-format", opts.LogFormat)
	}
	if opts.Debug {
		args = append(args, "--debug")
	}
	a, b, err := relay.NewLifelines()
	if err != nil {
		return err
	}
	defer a.Close()
	defer b.Close()
	for _, l := range []relay.Lifeline{a, b} {
		g, err := relay.StartGuard(path, args, alive, l)
		if err != nil {
			return err
		}
		if err := o.sb.AddProcess(g.Process.Pid); err != nil {
			return err
		}
	}
	return nil
}

// waitReady reads the relay's ready pipe to its end: "ready" or the
// relay's error.
func waitReady(ctx context.Context, r *os.File) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = r.SetReadDeadline(dl)
	}
	data, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return fmt.Errorf("waiting for the relay: %w", err)
	}
	msg := strings.TrimSpace(string(data))
	switch msg {
	case "ready":
		return nil
	case "":
		return errors.New("the relay exited before attaching the process")
	}
	return fmt.Errorf("relay: %s", msg)
}

// Kill stops the relay and reaps it (it is still this process's child).
func (rp *RelayProcess) Kill() { rp.stop(0) }

// stop lets the relay exit by itself for up to grace (its process is gone
// or going), then kills it, and reaps it (it is still our child).
func (rp *RelayProcess) stop(grace time.Duration) {
	if rp == nil || rp.cmd == nil {
		return
	}
	done := make(chan struct{})
	go func() { _ = rp.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = rp.cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	if rp.master != nil {
		rp.master.Close()
	}
}

// stopRelay waits a while for the relay of a removed process to exit by
// itself (with the process's status, for whoever reaps it), then
// terminates it.
func stopRelay(ctx context.Context, pid int, start uint64, grace time.Duration) {
	if !RelayAlive(pid, start) {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	if proc.Wait(wctx, pid) == nil {
		return
	}
	if !RelayAlive(pid, start) {
		return
	}
	tctx, tcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer tcancel()
	_ = proc.Terminate(tctx, pid)
}

// relayPIDs lists the host PIDs of the live relays of processes of
// container id in the sandbox at addr: init's (pid) first, then those of
// exec'd processes, found by their command lines (startRelay's arguments).
func relayPIDs(pid int, addr []string, id string) []int {
	pids := []int{}
	if pid > 0 {
		pids = append(pids, pid)
	}
	want := strings.Join(append(append([]string{}, addr...), "--container", id), "\x00") + "\x00"
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil || p == pid {
			continue
		}
		cl, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !bytes.HasPrefix(cl, []byte(RelayName+"\x00")) || !bytes.Contains(cl, []byte("\x00"+want)) {
			continue
		}
		pids = append(pids, p)
	}
	return pids
}

// Package conmontest drives an OCI runtime the way CRI-O's "oci" runtime type
// does: through conmon (the container monitor) for create and exec-sync,
// with conmon's argv, sync pipe, start pipe, exit directory and k8s-file
// log as CRI-O sets them up (internal/oci/runtime_oci.go), and directly
// for state, start, update, kill, delete and streaming exec. The
// integration tests and the benchmark use it to run cocoon-runtime (and
// runc, for comparison) exactly as CRI-O would.
package conmontest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxExecSyncSize is CRI-O's bound on an exec-sync's output, passed to
// conmon as --log-global-size-max.
const maxExecSyncSize = 16 * 1024 * 1024

// Runtime is one CRI-O runtime handler of type "oci" and the CRI-O
// settings that reach conmon.
type Runtime struct {
	// Conmon is the handler's monitor_path.
	Conmon string
	// Path is the handler's runtime_path.
	Path string
	// Root is the handler's runtime_root: --root of every runtime call.
	Root string
	// Env is the handler's monitor_env: conmon's environment, which
	// conmon passes on to the runtime. CRI-O's direct runtime calls
	// inherit CRI-O's environment; here they get Env too.
	Env []string
	// ExitDir is CRI-O's container_exits_dir, where conmon writes each
	// container's exit status to a file named by its ID.
	ExitDir string
	// SocketDir is CRI-O's container_attach_socket_dir.
	SocketDir string
	// LogLevel is conmon's --log-level (CRI-O passes its own level).
	LogLevel string
	// SystemdCgroup is CRI-O's cgroup_manager = "systemd" (its default):
	// conmon gets -s, and runtime calls but exec --systemd-cgroup.
	SystemdCgroup bool
}

// Container is what CRI-O knows about a container when it creates it.
type Container struct {
	ID     string
	Name   string
	Bundle string
	// LogPath is the container's k8s-file log.
	LogPath string
	// Dir is CRI-O's per-container directory (conmon's --persist-dir).
	Dir string
	// Terminal: the container has a terminal (conmon -t); else Stdin
	// keeps a pipe to its stdin open (conmon -i), closed after the first
	// attach when StdinOnce.
	Terminal, Stdin, StdinOnce bool
}

// ConmonPidFile is where conmon writes its PID (CRI-O's
// conmonPidFilePath).
func (c *Container) ConmonPidFile() string { return filepath.Join(c.Bundle, "conmon-pidfile") }

// PidFile is where the runtime writes the container's PID.
func (c *Container) PidFile() string { return filepath.Join(c.Bundle, "pidfile") }

// newPipe is CRI-O's: a close-on-exec seqpacket socket pair.
func newPipe() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_LOCAL, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("creating a socket pair: %w", err)
	}
	return os.NewFile(uintptr(fds[1]), "parent"), os.NewFile(uintptr(fds[0]), "child"), nil
}

// monitorEnv is conmon's environment: Env, then the sync and start pipes
// (descriptors 3 and 4).
func (r *Runtime) monitorEnv() []string {
	return append(append([]string{}, r.Env...), "_OCI_SYNCPIPE=3", "_OCI_STARTPIPE=4")
}

func (r *Runtime) logLevel() string {
	if r.LogLevel == "" {
		return "info"
	}
	return r.LogLevel
}

// CreateArgs is conmon's argv (without argv[0]) for creating c, in CRI-O's
// order (cgroupfs cgroup manager, no log size limit).
func (r *Runtime) CreateArgs(c *Container) []string {
	args := []string{
		"-b", c.Bundle,
		"-c", c.ID,
		"--exit-dir", r.ExitDir,
		"-l", c.LogPath,
		"--log-level", r.logLevel(),
		"-n", c.Name,
		"-P", c.ConmonPidFile(),
		"-p", c.PidFile(),
		"--persist-dir", c.Dir,
		"-r", r.Path,
		"--runtime-arg", "--root=" + r.Root,
		"--socket-dir-path", r.SocketDir,
		"--syslog",
		"-u", c.ID,
	}
	if r.SystemdCgroup {
		args = append(args, "-s")
	}
	if c.Terminal {
		args = append(args, "-t")
	} else if c.Stdin {
		if !c.StdinOnce {
			args = append(args, "--leave-stdin-open")
		}
		args = append(args, "-i")
	}
	return args
}

// syncInfo is conmon's message on the sync pipe after create.
type syncInfo struct {
	Pid     int    `json:"pid"`
	Message string `json:"message,omitempty"`
}

// exitCodeInfo is conmon's message on the sync pipe after an exec.
type exitCodeInfo struct {
	ExitCode int32  `json:"exit_code"`
	Message  string `json:"message,omitempty"`
}

// Create creates c as CRI-O does: it starts conmon with the sync and
// start pipes, releases it through the start pipe, waits for conmon's
// first process to exit (conmon forks and stays as the container's
// monitor) and reads the container's PID from the sync pipe. The
// container is "created"; Start runs it.
func (r *Runtime) Create(ctx context.Context, c *Container) (int, error) {
	for _, d := range []string{r.ExitDir, r.SocketDir, c.Dir, filepath.Dir(c.LogPath)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 0, err
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(r.Conmon, r.CreateArgs(c)...)
	cmd.Dir = c.Bundle
	// conmon's monitor, which outlives cmd, does not keep stderr; should
	// it, Wait would not hang on it.
	cmd.Stderr, cmd.WaitDelay = &stderr, 5*time.Second
	parentPipe, err := r.startMonitor(cmd, newPipe)
	if err != nil {
		return 0, err
	}
	defer parentPipe.Close()
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("conmon: %w: %s", err, stderr.String())
	}
	var si syncInfo
	if err := decodeWithin(ctx, parentPipe, &si); err != nil {
		return 0, fmt.Errorf("reading the container's pid from conmon (probably exited): %w", err)
	}
	if si.Pid == -1 {
		return 0, fmt.Errorf("container create failed: %s", si.Message)
	}
	return si.Pid, nil
}

// startMonitor starts conmon as cmd with CRI-O's pipes: the child end of
// a sync pipe from syncPipe as fd 3, a start pipe as fd 4, named in the
// environment; then it releases conmon through the start pipe and returns
// the parent end of the sync pipe. CRI-O makes the sync pipe with newPipe
// for create, os.Pipe for an exec-sync.
func (r *Runtime) startMonitor(cmd *exec.Cmd, syncPipe func() (parent, child *os.File, err error)) (*os.File, error) {
	parentPipe, childPipe, err := syncPipe()
	if err != nil {
		return nil, err
	}
	childStartPipe, parentStartPipe, err := newPipe()
	if err != nil {
		parentPipe.Close()
		childPipe.Close()
		return nil, err
	}
	defer parentStartPipe.Close()
	cmd.ExtraFiles = []*os.File{childPipe, childStartPipe}
	cmd.Env = r.monitorEnv()
	err = cmd.Start()
	childPipe.Close()
	childStartPipe.Close()
	if err != nil {
		parentPipe.Close()
		return nil, fmt.Errorf("starting conmon: %w", err)
	}
	if _, err := parentStartPipe.Write([]byte{0}); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		parentPipe.Close()
		return nil, fmt.Errorf("releasing conmon: %w", err)
	}
	return parentPipe, nil
}

// decodeWithin decodes one JSON message from f before ctx ends.
func decodeWithin(ctx context.Context, f *os.File, v any) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = f.SetReadDeadline(dl)
	}
	return json.NewDecoder(f).Decode(v)
}

// ConmonPid reads conmon's PID file.
func (r *Runtime) ConmonPid(c *Container) (int, error) {
	data, err := os.ReadFile(c.ConmonPidFile())
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// Attach connects to the attach socket conmon serves for a container, as
// CRI-O's AttachContainer does: what is written goes to the container's
// stdin (conmon -i), and CloseWrite ends it when the container was created
// with StdinOnce.
func (r *Runtime) Attach(id string) (*net.UnixConn, error) {
	path := filepath.Join(r.SocketDir, id, "attach")
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("connecting to the attach socket of %s: %w", id, err)
	}
	return conn, nil
}

// CmdError is a runtime command that failed, with its output.
type CmdError struct {
	Args           []string
	Stdout, Stderr string
	Err            error
}

func (e *CmdError) Error() string {
	return fmt.Sprintf("`%s` failed: %s %s: %v", strings.Join(e.Args, " "), strings.TrimSpace(e.Stderr), strings.TrimSpace(e.Stdout), e.Err)
}

func (e *CmdError) Unwrap() error { return e.Err }

// NotFound tells whether the runtime reported what CRI-O takes for a
// container that has already exited (its ErrNotFound).
func (e *CmdError) NotFound() bool {
	for _, s := range []string{"no such process", "container not running", "invalid process"} {
		if strings.Contains(e.Stderr, s) {
			return true
		}
	}
	return false
}

// RuntimeArgs is the argv (without argv[0]) of a direct runtime call:
// CRI-O's defaultRuntimeArgs (--root R, two words) then args.
func (r *Runtime) RuntimeArgs(args ...string) []string {
	all := []string{"--root", r.Root}
	if r.SystemdCgroup {
		all = append(all, "--systemd-cgroup")
	}
	return append(all, args...)
}

// Run runs the runtime directly, as CRI-O's runtimeCmd does, with stdin
// when it is not nil, and returns its stdout; a failure is a *CmdError.
func (r *Runtime) Run(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	all := r.RuntimeArgs(args...)
	cmd := exec.CommandContext(ctx, r.Path, all...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	cmd.Env = append(os.Environ(), r.Env...)
	if err := cmd.Run(); err != nil {
		return stdout.String(), &CmdError{Args: append([]string{r.Path}, all...), Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// State is the part of `state` CRI-O reads.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

// State runs `state ID`.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) {
	out, err := r.Run(ctx, nil, "state", id)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return nil, fmt.Errorf("decoding the state of %s: %w", id, err)
	}
	return &s, nil
}

// Update runs `update --resources - ID` with res as JSON on stdin.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = r.Run(ctx, bytes.NewReader(data), "update", "--resources", "-", id)
	return err
}

// ExitCode reads the exit status conmon wrote for id to the exit
// directory, waiting for the file until ctx ends.
func (r *Runtime) ExitCode(ctx context.Context, id string) (int, error) {
	path := filepath.Join(r.ExitDir, id)
	for {
		data, err := os.ReadFile(path)
		if err == nil && len(data) > 0 {
			return strconv.Atoi(strings.TrimSpace(string(data)))
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WriteProcess writes the process of an exec as CRI-O's
// prepareProcessExec does: the container's process with args, and a
// terminal only when asked for. The caller removes the file.
func WriteProcess(dir string, container *specs.Process, args []string, tty bool) (string, error) {
	p := *container
	p.Args = args
	p.Terminal = tty
	data, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "exec-process-")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// ExecCommand is CRI-O's streaming exec (ExecContainer): the runtime in
// the foreground, `exec --process F ID`, relaying its stdio (or, started
// on a pty, its terminal) and exiting with the process's status.
func (r *Runtime) ExecCommand(ctx context.Context, id, processFile string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.Path, r.RuntimeArgs("exec", "--process", processFile, id)...)
	cmd.Env = append(os.Environ(), r.Env...)
	return cmd
}

// ExecResult is an exec-sync's outcome.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// ExecSyncArgs is conmon's argv (without argv[0]) for an exec-sync.
func (r *Runtime) ExecSyncArgs(c *Container, pidFile, logPath, processFile string, timeout int) []string {
	args := []string{
		"-c", c.ID,
		"-n", c.Name,
		"-r", r.Path,
		"-p", pidFile,
		"-e",
		"-l", logPath,
		"--socket-dir-path", r.SocketDir,
		"--log-level", r.logLevel(),
		"--sync",
		"--log-global-size-max", strconv.Itoa(maxExecSyncSize),
	}
	if c.Terminal {
		args = append(args, "-t")
	}
	if timeout > 0 {
		args = append(args, "-T", strconv.Itoa(timeout))
	}
	if r.SystemdCgroup {
		args = append(args, "-s")
	}
	return append(args, "--exec-process-spec", processFile, "--runtime-arg", "--root="+r.Root)
}

// ExecSync runs args in container c as CRI-O's ExecSyncContainer does:
// conmon --exec (which runs `exec --pid-file P --process F --detach ID`),
// the exit code from the sync pipe, the output from the k8s-file log
// conmon writes. spec is the container's process (the exec's template).
func (r *Runtime) ExecSync(ctx context.Context, c *Container, spec *specs.Process, args []string, timeout int) (*ExecResult, error) {
	tmp, err := os.MkdirTemp("", "conmon-exec-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	pidFile := filepath.Join(tmp, "pidfile")
	logPath := filepath.Join(tmp, "log")
	processFile, err := WriteProcess(tmp, spec, args, c.Terminal)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.Conmon, r.ExecSyncArgs(c, pidFile, logPath, processFile, timeout)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	parentPipe, err := r.startMonitor(cmd, func() (*os.File, *os.File, error) { return os.Pipe() })
	if err != nil {
		return nil, err
	}
	defer parentPipe.Close()
	waitErr := cmd.Wait()
	var ec exitCodeInfo
	decodeErr := decodeWithin(ctx, parentPipe, &ec)
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return nil, fmt.Errorf("conmon: %w: %s", waitErr, stderr.String())
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("reading the exit code from conmon: %w (conmon: %v, stderr %q)", decodeErr, waitErr, stderr.String())
	}
	if ec.ExitCode == -1 {
		return &ExecResult{Stderr: []byte(ec.Message), ExitCode: -1}, nil
	}
	logData, err := os.ReadFile(logPath)
	if err != nil {
		return nil, err
	}
	res := &ExecResult{ExitCode: int(ec.ExitCode)}
	res.Stdout, res.Stderr = ParseLog(logData)
	return res, nil
}

// ParseLog splits a k8s-file log ("TIME STREAM F|P CONTENT" lines) into
// its stdout and stderr, joining partial lines as CRI-O's parseLog does.
func ParseLog(data []byte) (stdout, stderr []byte) {
	for _, line := range bytes.SplitAfter(data, []byte{'\n'}) {
		parts := bytes.SplitN(line, []byte{' '}, 4)
		if len(parts) < 4 {
			continue
		}
		content := parts[3]
		if string(parts[2]) == "P" {
			content = bytes.TrimSuffix(content, []byte{'\n'})
		}
		switch string(parts[1]) {
		case "stdout":
			stdout = append(stdout, content...)
		case "stderr":
			stderr = append(stderr, content...)
		}
	}
	return stdout, stderr
}

package conmontest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Podman drives conmon too, with a variant of its exec: conmon's API
// version 1 and --exec-attach, where conmon serves the exec's attach socket
// before it runs the runtime's `exec --detach`, so that the caller reads
// all the process's output from the socket and writes its stdin there.
// The runtime sees the same argv as in CRI-O's exec-sync.

// apiV1Message is conmon's message on its pipes with --api-version 1.
type apiV1Message struct {
	Data    int    `json:"data"`
	Message string `json:"message,omitempty"`
}

// AttachedExec is an exec started with ExecAttach.
type AttachedExec struct {
	// Pid is the process's PID (its shim's, with cocoon).
	Pid int
	// Conn is the exec's attach socket: writes go to the process's
	// stdin, CloseWrite closes it; reads are conmon's packets, each the
	// stream (2 stdout, 3 stderr) then the bytes.
	Conn *net.UnixConn
	sync *os.File
}

// ExecAttach starts args in container c as Podman's exec does: conmon
// --api-version 1 --exec-attach in dir (the exec session's bundle), with
// -i when stdin, attached through dir/attach before the runtime runs.
func (r *Runtime) ExecAttach(ctx context.Context, c *Container, dir string, spec *specs.Process, args []string, stdin bool) (_ *AttachedExec, retErr error) {
	processFile, err := WriteProcess(dir, spec, args, false)
	if err != nil {
		return nil, err
	}
	argv := []string{
		"--api-version", "1",
		"-c", c.ID,
		"-u", filepath.Base(dir),
		"-r", r.Path,
		"-b", dir,
		"-p", filepath.Join(dir, "exec_pid"),
		"-n", c.Name,
		"--exit-dir", filepath.Join(dir, "exits"),
		"--persist-dir", filepath.Join(dir, "persist"),
		"--full-attach",
		"-l", "k8s-file:" + filepath.Join(dir, "exec_log"),
		"--log-level", r.logLevel(),
		"--runtime-arg", "--log-format=json",
		"--runtime-arg", "--log",
		"--runtime-arg", filepath.Join(dir, "oci-log"),
		"--runtime-arg", "--root=" + r.Root,
	}
	if stdin {
		argv = append(argv, "-i")
	}
	argv = append(argv, "-e", "--exec-attach", "--exec-process-spec", processFile)
	for _, d := range []string{"exits", "persist"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}

	syncParent, syncChild, err := newPipe()
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			syncParent.Close()
		}
	}()
	startChild, startParent, err := newPipe()
	if err != nil {
		syncChild.Close()
		return nil, err
	}
	defer startParent.Close()
	attachParent, attachChild, err := newPipe()
	if err != nil {
		syncChild.Close()
		startChild.Close()
		return nil, err
	}
	defer attachParent.Close()
	cmd := exec.Command(r.Conmon, argv...)
	cmd.Dir = dir
	cmd.Env = append(append([]string{}, r.Env...), "_OCI_SYNCPIPE=3", "_OCI_STARTPIPE=4", "_OCI_ATTACHPIPE=5")
	cmd.ExtraFiles = []*os.File{syncChild, startChild, attachChild}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	syncChild.Close()
	startChild.Close()
	attachChild.Close()
	if err != nil {
		return nil, fmt.Errorf("starting conmon: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	// Podman moves conmon to its cgroup, then lets it go on; conmon
	// serves the attach socket and says so on the attach pipe.
	if _, err := startParent.Write([]byte{0}); err != nil {
		return nil, fmt.Errorf("releasing conmon: %w", err)
	}
	var ready apiV1Message
	if err := decodeWithin(ctx, attachParent, &ready); err != nil {
		return nil, fmt.Errorf("waiting for conmon's attach socket: %w", err)
	}
	path := filepath.Join(dir, "attach")
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("attaching to the exec: %w", err)
	}
	defer func() {
		if retErr != nil {
			conn.Close()
		}
	}()
	// Attached: now conmon runs the runtime.
	if _, err := startParent.Write([]byte{0}); err != nil {
		return nil, fmt.Errorf("starting the exec: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("conmon: %w", err)
	}
	var pid apiV1Message
	if err := decodeWithin(ctx, syncParent, &pid); err != nil {
		return nil, fmt.Errorf("reading the exec's pid from conmon: %w", err)
	}
	if pid.Data <= 0 {
		return nil, fmt.Errorf("exec failed: %s", pid.Message)
	}
	return &AttachedExec{Pid: pid.Data, Conn: conn, sync: syncParent}, nil
}

// Output reads the attach socket to its end and splits conmon's packets
// into stdout and stderr.
func (a *AttachedExec) Output() (stdout, stderr []byte, err error) {
	buf := make([]byte, 64<<10)
	for {
		n, err := a.Conn.Read(buf)
		if n > 0 {
			switch buf[0] {
			case 2:
				stdout = append(stdout, buf[1:n]...)
			case 3:
				stderr = append(stderr, buf[1:n]...)
			}
		}
		if errors.Is(err, io.EOF) || n == 0 && err == nil {
			return stdout, stderr, nil
		}
		if err != nil {
			return stdout, stderr, err
		}
	}
}

// Wait returns the exit status conmon reports on the sync pipe.
func (a *AttachedExec) Wait(ctx context.Context) (int, error) {
	defer a.sync.Close()
	defer a.Conn.Close()
	var m apiV1Message
	if err := decodeWithin(ctx, a.sync, &m); err != nil {
		return 0, fmt.Errorf("reading the exec's exit status from conmon: %w", err)
	}
	if m.Message != "" {
		return m.Data, errors.New(m.Message)
	}
	return m.Data, nil
}

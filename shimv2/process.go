package shimv2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/fifo"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/container"
)

// stdio is the stdio that containerd gives a process: FIFO paths (empty:
// not attached), and whether it has a terminal (whose output goes to
// stdout).
type stdio struct {
	stdin, stdout, stderr string
	terminal              bool
}

// process is a container's init process (execID empty) or an exec'd one.
type process struct {
	containerID string
	execID      string
	io          stdio
	// spec is an exec's OCI process.
	spec *specs.Process
	// killAllOnExit is set on the init process of a container without a
	// PID namespace of its own (a pod's): its exit must take the
	// container's other processes along, as with containerd-shim-runc-v2.
	killAllOnExit bool

	mu sync.Mutex
	// status follows the container layer's state rules (CheckOp); an
	// exec'd process is never paused.
	status     container.Status
	pid        uint32
	exitStatus uint32
	exitedAt   time.Time
	oomKilled  bool          // the guest's OOM killer ended it
	exited     chan struct{} // closed by done, after the exit event

	// Host side of the stdio relay, from attach to the process's end.
	attached *agentclient.Attached
	fifos    []io.Closer
	stdin    io.Closer     // the stdin FIFO, also in fifos
	stdinEOF chan struct{} // closed once the stdin FIFO has ended
}

func newProcess(containerID, execID string, io stdio) *process {
	return &process{
		containerID: containerID,
		execID:      execID,
		io:          io,
		status:      container.Created,
		exited:      make(chan struct{}),
		stdinEOF:    make(chan struct{}),
	}
}

// id is the process's ID in containerd's events: the container's for the
// init process.
func (p *process) id() string {
	if p.execID == "" {
		return p.containerID
	}
	return p.execID
}

// state returns the status, the exit status and when it exited.
func (p *process) state() (container.Status, uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.exitStatus, p.exitedAt
}

// check says whether op is allowed in the process's status now.
func (p *process) check(op container.Op) error {
	st, _, _ := p.state()
	if err := container.CheckOp(op, p.id(), st); err != nil {
		return fmt.Errorf("process %s: %w", p.id(), err)
	}
	return nil
}

// setStatus records a status that an operation reached; a stopped process
// stays stopped.
func (p *process) setStatus(st container.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != container.Stopped {
		p.status = st
	}
}

// taskStatus is st as containerd's task API says it.
func taskStatus(st container.Status) tasktypes.Status {
	switch st {
	case container.Created:
		return tasktypes.Status_CREATED
	case container.Running:
		return tasktypes.Status_RUNNING
	case container.Paused:
		return tasktypes.Status_PAUSED
	case container.Stopped:
		return tasktypes.Status_STOPPED
	}
	return tasktypes.Status_UNKNOWN
}

// stdio announces to the agent the streams that attach opens.
func (p *process) stdio() container.Stdio {
	return container.StdioOf(p.clientIO(nil, nil, nil))
}

// clientIO says which of the given host ends relay which stream.
func (p *process) clientIO(stdin io.Reader, stdout, stderr io.Writer) agentclient.IO {
	o := agentclient.IO{Terminal: p.io.terminal}
	if p.io.stdin != "" {
		o.Stdin = stdin
		if stdin == nil {
			o.Stdin = eofReader{}
		}
	}
	if p.io.stdout != "" {
		o.Stdout = stdout
		if stdout == nil {
			o.Stdout = io.Discard
		}
	}
	if p.io.stderr != "" && !p.io.terminal {
		o.Stderr = stderr
		if stderr == nil {
			o.Stderr = io.Discard
		}
	}
	return o
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// attach opens containerd's FIFOs and the process's streams in the guest,
// and starts relaying between them. The output FIFOs are also opened for
// reading, as containerd-shim-runc-v2 does, so that the process never
// writes to a FIFO without a reader while containerd reopens its end.
func (p *process) attach(ctx context.Context, c *container.Container) (retErr error) {
	defer func() {
		if retErr != nil {
			p.closeFifos()
		}
	}()
	var (
		stdin          io.Reader
		stdout, stderr io.Writer
	)
	if p.io.stdin != "" {
		// Opened without waiting for containerd's writer, which may come
		// after this request: the open must outlive the request's context
		// (whose end would close the FIFO, and lose stdin's EOF).
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), p.io.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("opening stdin %s: %w", p.io.stdin, err)
		}
		p.fifos = append(p.fifos, f)
		p.stdin = f
		stdin = &eofNotifier{r: f, eof: p.stdinEOF}
	}
	openOut := func(path string) (io.Writer, error) {
		w, err := fifo.OpenFifo(ctx, path, syscall.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", path, err)
		}
		p.fifos = append(p.fifos, w)
		r, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", path, err)
		}
		p.fifos = append(p.fifos, r)
		return w, nil
	}
	var err error
	if p.io.stdout != "" {
		if stdout, err = openOut(p.io.stdout); err != nil {
			return err
		}
	}
	if p.io.stderr != "" && !p.io.terminal {
		if p.io.stderr == p.io.stdout {
			stderr = stdout
		} else if stderr, err = openOut(p.io.stderr); err != nil {
			return err
		}
	}
	a, err := c.Attach(ctx, p.execID, p.clientIO(stdin, stdout, stderr))
	if err != nil {
		return err
	}
	p.attached = a
	return nil
}

// closeStdin closes the stdin FIFO, which ends its relay.
func (p *process) closeStdin() {
	p.mu.Lock()
	f := p.stdin
	p.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

func (p *process) closeFifos() {
	for _, f := range p.fifos {
		f.Close()
	}
	p.fifos = nil
}

// eofNotifier closes eof once r has ended.
type eofNotifier struct {
	r    io.Reader
	eof  chan struct{}
	once sync.Once
}

func (e *eofNotifier) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

// wait follows the process to its end through the agent, lets its output
// drain into the FIFOs (within drain), closes them, records the exit (done
// then releases its waiters) and returns how it ended, with what went
// wrong on the way. A lost agent counts as exit status 255.
func (p *process) wait(ctx context.Context, c *container.Container, drain time.Duration) (container.Exit, error) {
	exit, err := c.Wait(ctx, p.execID)
	if err != nil {
		exit = container.Exit{Status: 255, At: time.Now()}
	}
	if p.killAllOnExit {
		// Until they die, they hold the output streams open.
		c.Kill(ctx, "")
	}
	if p.attached != nil {
		dctx, cancel := context.WithTimeout(ctx, drain)
		if werr := p.attached.Wait(dctx); werr != nil && !errors.Is(werr, context.DeadlineExceeded) {
			err = errors.Join(err, werr)
		}
		cancel()
		p.attached.Close()
	}
	p.closeFifos()
	p.mu.Lock()
	p.status = container.Stopped
	p.exitStatus = uint32(exit.Status)
	p.exitedAt = exit.At
	p.oomKilled = exit.OOMKilled
	p.mu.Unlock()
	return exit, err
}

// killedByOOM says whether the guest's OOM killer ended the process.
func (p *process) killedByOOM() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.oomKilled
}

// done tells the process's waiters that it has exited; its exit event has
// been published before.
func (p *process) done() {
	close(p.exited)
}

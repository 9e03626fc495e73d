// Package relay relays one container process of a cocoon sandbox: the
// container's init process or one exec'd process. cocoon-relay runs it on the
// host, one relay per process, and its PID is the one that runc's callers
// (containerd-shim-runc-v2, conmon, Docker) take for the container's: they
// wait for it as a subreaper, read its exit status as the process's, and
// signal it. So the relay relays its own stdio (or terminal) to the process's
// stdio streams in the guest, forwards the signals it receives, resizes the
// guest's terminal when its own changes size, and exits with the process's
// status.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/sirupsen/logrus"
)

const (
	// DefaultBufferSize is the copy buffer of each relayed direction. The
	// agent channel moves large frames best (see proxy.DefaultBufferSize),
	// and the stdio target is 200 MB/s end to end.
	DefaultBufferSize = 256 << 10
	// DefaultOpenTimeout bounds opening the process's stdio streams, at
	// hardware speed (multiplied by Config.Scale).
	DefaultOpenTimeout = 2 * time.Second
	// DefaultDrainTimeout is how long the relay keeps relaying output after
	// the process has exited while no byte moves, at hardware speed
	// (multiplied by Config.Scale): the agent closes the output streams once
	// flushed, but a guest that keeps one open must not keep the relay alive.
	DefaultDrainTimeout = 2 * time.Second
	// drainMaxFactor bounds the whole drain, moving or not, to this many
	// drain timeouts: long enough for a slow reader of the relay's output to
	// take what the agent flushed (up to the proxy's 8 MiB window).
	drainMaxFactor = 10

	// StatusLost is the relay's exit status when it could not follow the
	// process to its end: the sandbox went away, or the agent refused.
	StatusLost = 255
)

// ErrLostSandbox is returned by Run when the connection to the agent is
// lost: the agent, the proxy or the VM died.
var ErrLostSandbox = errors.New("lost the sandbox")

// Agent is what the relay needs of the sandbox's agent; *agentclient.Client
// provides it.
type Agent interface {
	// AttachStdio opens one stdio stream of the process.
	AttachStdio(ctx context.Context, containerID, execID string, s api.Stdio) (agentclient.Conn, error)
	// SignalProcess signals the process.
	SignalProcess(ctx context.Context, req *api.SignalProcessRequest) (*api.Empty, error)
	// WaitProcess returns once the process has exited and its output has
	// been flushed to its streams.
	WaitProcess(ctx context.Context, req *api.ProcessRequest) (*api.WaitProcessResponse, error)
	// ResizeTty sets the size of the process's terminal.
	ResizeTty(ctx context.Context, req *api.ResizeTtyRequest) (*api.Empty, error)
	// Done is closed once the connection to the agent is lost.
	Done() <-chan struct{}
}

var _ Agent = (*agentclient.Client)(nil)

// Config says which process a relay relays, and what to relay.
type Config struct {
	// ContainerID names the container; ExecID the exec'd process, or is
	// empty for the container's init process.
	ContainerID string
	ExecID      string

	// Console, when set, is the pty slave whose master the caller holds:
	// the process has a terminal, and Console is relayed both ways to its
	// Terminal stream: what Console reads goes to the process, and what the
	// process shows is written to Stdout when set (the same terminal on
	// another descriptor), else to Console; Stdin and Stderr are ignored.
	// Run puts Console in raw mode, since the guest's own pty does the line
	// discipline, and resizes the guest's terminal to Console's size at
	// start and on every SIGWINCH.
	Console *os.File

	// Stdin, Stdout and Stderr are relayed to and from the process's
	// streams of the same name. A nil one is not attached: it must match the
	// api.StdioConfig the process was created with (see AttachedStdio).
	// End of file on Stdin ends the process's stdin.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// Signals delivers the signals the relay receives (from signal.Notify);
	// each is forwarded to the process but SIGCHLD, SIGURG, SIGPIPE and
	// SIGWINCH, which resizes the terminal. Nil means no signals.
	Signals <-chan os.Signal

	// Ready, when set, is called once every stream is open, before Run
	// waits for the process.
	Ready func()

	// OnOOM, when set, is called once the process has exited, killed by
	// the guest's OOM killer, before Run returns its status.
	OnOOM func()

	// Scale multiplies the timeouts: hypervisor.Accelerator.TimeoutScale()
	// (10 under TCG); zero means 1.
	Scale time.Duration
	// OpenTimeout bounds opening the streams; zero means
	// DefaultOpenTimeout.
	OpenTimeout time.Duration
	// DrainTimeout bounds how long output may stall after the exit; zero
	// means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// BufferSize is the copy buffer of each direction; zero means
	// DefaultBufferSize.
	BufferSize int

	// Log receives the relay's messages; nil discards them.
	Log *logrus.Entry
}

func (c *Config) scale(d, def time.Duration) time.Duration {
	if d <= 0 {
		d = def
	}
	if c.Scale > 0 {
		d *= c.Scale
	}
	return d
}

func (c *Config) log() *logrus.Entry {
	if c.Log != nil {
		return c.Log
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func (c *Config) bufferSize() int {
	if c.BufferSize > 0 {
		return c.BufferSize
	}
	return DefaultBufferSize
}

// Run relays the process named by cfg until it exits, and returns its exit
// status (runc's: the exit code, or 128+N when killed by signal N).
//
// It opens the process's streams, calls cfg.Ready, then relays stdio and
// forwards signals while it waits for the process. Once the process has
// exited it lets the output streams drain (as long as bytes keep moving, up
// to the drain timeout after they stop and ten drain timeouts in all) and
// returns; it does not wait for Stdin, whose reader may block forever. An error wraps ErrLostSandbox
// when the agent went away; the relay should then exit with StatusLost.
func Run(ctx context.Context, a Agent, cfg Config) (int, error) {
	log := cfg.log()
	s := &session{agent: a, cfg: &cfg, log: log, act: newActivity()}
	openCtx, cancel := context.WithTimeout(ctx, cfg.scale(cfg.OpenTimeout, DefaultOpenTimeout))
	err := s.open(openCtx)
	cancel()
	if err != nil {
		s.closeStreams()
		return StatusLost, s.lost(err)
	}
	defer s.closeStreams()
	if cfg.Console != nil {
		restore, err := MakeRaw(cfg.Console)
		if err != nil {
			return StatusLost, fmt.Errorf("setting the terminal raw: %w", err)
		}
		defer restore()
		s.resize(ctx) // the size the caller set before the relay listened
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}

	exited := make(chan struct{})
	defer close(exited)
	outputs := s.startRelays()
	go s.forwardSignals(ctx, exited)

	status, err := s.wait(ctx)
	if err != nil {
		return StatusLost, s.lost(err)
	}
	drainTimeout := cfg.scale(cfg.DrainTimeout, DefaultDrainTimeout)
	exitedAt := time.Now()
	if !s.act.drain(outputs, drainTimeout, drainMaxFactor*drainTimeout) {
		log.Warnf("output still open %v after the process exited: closing it", time.Since(exitedAt).Round(time.Millisecond))
	}
	return status, nil
}

// session is one Run.
type session struct {
	agent Agent
	cfg   *Config
	log   *logrus.Entry
	// act is stamped by the output relays.
	act *activity

	// Streams; nil when not attached.
	stdin, stdout, stderr, terminal agentclient.Conn
}

// processRequest names the process.
func (s *session) processRequest() *api.ProcessRequest {
	return &api.ProcessRequest{ContainerId: s.cfg.ContainerID, ExecId: s.cfg.ExecID}
}

// wait waits for the process's exit. WaitProcess has no call timeout: it
// lasts the process's whole life, and only the loss of the connection ends
// it early.
func (s *session) wait(ctx context.Context) (int, error) {
	resp, err := s.agent.WaitProcess(ctx, s.processRequest())
	if err != nil {
		return StatusLost, fmt.Errorf("waiting for the process: %w", err)
	}
	status := int(resp.GetExitStatus())
	log := s.log.WithField("status", status)
	if resp.GetOomKilled() {
		log = log.WithField("oom_killed", true)
	}
	log.Debug("process exited")
	if resp.GetOomKilled() && s.cfg.OnOOM != nil {
		s.cfg.OnOOM()
	}
	if status < 0 || status > 255 {
		log.Warn("exit status out of range")
		return StatusLost, fmt.Errorf("process exit status %d out of range", status)
	}
	return status, nil
}

// lost tells an error caused by the loss of the sandbox apart, wrapping
// ErrLostSandbox into it.
func (s *session) lost(err error) error {
	if err == nil || errors.Is(err, ErrLostSandbox) {
		return err
	}
	select {
	case <-s.agent.Done():
		return fmt.Errorf("%w: %w", ErrLostSandbox, err)
	default:
	}
	if isConnectionLoss(err) {
		return fmt.Errorf("%w: %w", ErrLostSandbox, err)
	}
	return err
}

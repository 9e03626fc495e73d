// Package agentclient is the host side of the agent protocol: it opens streams to
// a sandbox's agent (through cocoon-proxy or over vsock), calls the agent's
// ttrpc API with a deadline on every call, and waits for the agent while the
// guest boots.
package agentclient

import (
	"context"
	"io"
	"time"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
)

const (
	// DefaultBootTimeout is how long WaitReady waits for a KVM guest's agent.
	DefaultBootTimeout = 10 * time.Second
	// DefaultCallTimeout bounds each call whose context has no deadline.
	DefaultCallTimeout = 10 * time.Second
	// DefaultAttemptTimeout bounds each connect-and-check attempt of WaitReady.
	DefaultAttemptTimeout = 1 * time.Second
)

// Options configures a Client and WaitReady. The zero value is usable:
// every zero field takes its default.
//
// Timeouts are given for a guest running at hardware speed (KVM) and are all
// multiplied by Scale, which is hypervisor.Accelerator.TimeoutScale() of the
// sandbox (10 under TCG).
type Options struct {
	// Scale multiplies every timeout; zero means 1.
	Scale time.Duration
	// BootTimeout bounds WaitReady; zero means DefaultBootTimeout.
	BootTimeout time.Duration
	// CallTimeout bounds every call whose context has no deadline; zero
	// means DefaultCallTimeout.
	CallTimeout time.Duration
	// AttemptTimeout bounds each connect-and-check attempt of WaitReady;
	// zero means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// Backoff spaces WaitReady's attempts; the zero value means
	// DefaultBackoff().
	Backoff Backoff
	// ConsoleLog is the guest console's log file: its tail is appended to
	// the error when the agent does not answer in time. Optional.
	ConsoleLog string
	// Log receives debug messages about retries; nil discards them.
	Log *logrus.Entry
	// Sleep waits d or until ctx is done, returning ctx.Err() then; nil
	// uses the real clock. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (o Options) scale(d, def time.Duration) time.Duration {
	if d <= 0 {
		d = def
	}
	if o.Scale > 0 {
		d *= o.Scale
	}
	return d
}

func (o Options) bootTimeout() time.Duration { return o.scale(o.BootTimeout, DefaultBootTimeout) }
func (o Options) callTimeout() time.Duration { return o.scale(o.CallTimeout, DefaultCallTimeout) }
func (o Options) attemptTimeout() time.Duration {
	return o.scale(o.AttemptTimeout, DefaultAttemptTimeout)
}

func (o Options) log() *logrus.Entry {
	if o.Log != nil {
		return o.Log
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// Client calls a sandbox's agent over one ttrpc connection (one stream).
// It is safe for concurrent use; calls are multiplexed on the stream.
type Client struct {
	dialer      Dialer
	callTimeout time.Duration
	rpc         *ttrpc.Client
	svc         api.AgentService
	done        chan struct{}
}

var _ api.AgentService = (*Client)(nil)

// Connect opens an RPC stream with d and returns a client on it, without
// checking that the agent answers (WaitReady does). ctx bounds the
// connection's setup only, not the client's life.
func Connect(ctx context.Context, d Dialer, opts Options) (*Client, error) {
	conn, err := OpenStream(ctx, d, api.StreamHeader{Kind: api.StreamRPC})
	if err != nil {
		return nil, err
	}
	c := &Client{
		dialer:      d,
		callTimeout: opts.callTimeout(),
		done:        make(chan struct{}),
	}
	c.rpc = ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { close(c.done) }))
	c.svc = api.NewAgentClient(c.rpc)
	return c, nil
}

// Close closes the connection to the agent; calls in flight fail.
func (c *Client) Close() error {
	return c.rpc.Close()
}

// Done is closed once the connection to the agent is lost or closed: the
// agent, the proxy or the VM went away.
func (c *Client) Done() <-chan struct{} {
	return c.done
}

// OpenStream opens another stream to the same agent, for h (typically one
// stdio stream of a process).
func (c *Client) OpenStream(ctx context.Context, h api.StreamHeader) (Conn, error) {
	return OpenStream(ctx, c.dialer, h)
}

// callContext gives ctx the client's call timeout unless it has a deadline
// already, so that a caller can allow a long operation more time.
func (c *Client) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.callTimeout)
}

// call runs one RPC with the client's deadline (see callContext) and wraps
// its error with method (see callError).
func call[Req, Resp any](ctx context.Context, c *Client, method string, fn func(context.Context, Req) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	resp, err := fn(ctx, req)
	if err != nil {
		var zero Resp
		return zero, callError(ctx, method, err)
	}
	return resp, nil
}

// Check asks whether the agent serves requests.
func (c *Client) Check(ctx context.Context, req *api.CheckRequest) (*api.CheckResponse, error) {
	return call(ctx, c, "check", c.svc.Check, req)
}

// Version asks the agent for its version and the guest kernel's.
func (c *Client) Version(ctx context.Context, req *api.VersionRequest) (*api.VersionResponse, error) {
	return call(ctx, c, "version", c.svc.Version, req)
}

// DestroySandbox asks the agent to stop every container and power the
// guest off; it answers before the power-off, after which Done closes.
func (c *Client) DestroySandbox(ctx context.Context, req *api.DestroySandboxRequest) (*api.DestroySandboxResponse, error) {
	return call(ctx, c, "destroy sandbox", c.svc.DestroySandbox, req)
}

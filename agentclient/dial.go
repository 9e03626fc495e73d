package agentclient

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/mdlayher/vsock"
)

// Conn is one stream to the agent. Its write side can be closed alone, so
// that closing a process's stdin delivers EOF while its output still flows.
type Conn interface {
	net.Conn
	// CloseWrite ends what the host sends; the agent reads EOF.
	CloseWrite() error
}

// Dialer opens a new stream to a sandbox's agent: one connection to the
// sandbox's cocoon-proxy (one yamux stream), or one vsock connection.
type Dialer interface {
	Dial(ctx context.Context) (Conn, error)
}

// DialerFunc adapts a function to Dialer.
type DialerFunc func(ctx context.Context) (Conn, error)

// Dial calls f.
func (f DialerFunc) Dial(ctx context.Context) (Conn, error) { return f(ctx) }

// ProxyDialer reaches the agent through the sandbox's cocoon-proxy, which
// turns each connection to its unix socket into one stream to the agent.
type ProxyDialer struct {
	// Path is the proxy's socket (proxy.sock).
	Path string
}

// Dial connects to the proxy.
func (d ProxyDialer) Dial(ctx context.Context) (Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "unix", d.Path)
	if err != nil {
		return nil, fmt.Errorf("dialing agent proxy: %w", err)
	}
	return c.(*net.UnixConn), nil
}

// VsockDialer reaches the agent directly over AF_VSOCK, one connection per
// stream; no proxy runs. It needs /dev/vhost-vsock on the host.
type VsockDialer struct {
	// CID is the guest's context ID.
	CID uint32
	// Port is the agent's port; zero means api.DefaultVsockPort.
	Port uint32
}

// Dial connects to the agent's vsock port.
func (d VsockDialer) Dial(ctx context.Context) (Conn, error) {
	port := d.Port
	if port == 0 {
		port = api.DefaultVsockPort
	}
	c, err := vsock.DialContext(ctx, d.CID, port, nil)
	if err != nil {
		return nil, fmt.Errorf("dialing agent over vsock: %w", err)
	}
	return c, nil
}

// OpenStream opens a stream with d and writes h, so that the returned Conn
// carries what h names: the ttrpc API (api.StreamRPC) or one process's stdio
// (api.StreamStdio). The caller owns the Conn.
func OpenStream(ctx context.Context, d Dialer, h api.StreamHeader) (Conn, error) {
	c, err := d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	// Let ctx interrupt the header's write: a wedged transport would
	// otherwise block it forever.
	stop := context.AfterFunc(ctx, func() { c.SetWriteDeadline(time.Unix(1, 0)) })
	err = api.WriteStreamHeader(c, h)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("opening agent stream: %w", err)
	}
	return c, nil
}

// OpenWatch opens an idle stream to the agent (an RPC stream on which
// nothing is sent), whose reads end when the agent, its proxy or the VM
// goes away: what a helper that must not outlive the sandbox waits on.
func OpenWatch(ctx context.Context, d Dialer) (Conn, error) {
	return OpenStream(ctx, d, api.StreamHeader{Kind: api.StreamRPC})
}

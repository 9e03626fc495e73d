package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/sirupsen/logrus"
)

// SerialTransport is the virtio-serial port named PortName, multiplexed with
// yamux: the agent is the yamux server, and every stream the host opens is
// one connection of the listener.
type SerialTransport struct {
	// SysRoot and DevRoot are where sysfs and devtmpfs are mounted: "/sys"
	// and "/dev" in the guest.
	SysRoot, DevRoot string
	// PortName is the port's name, api.AgentPortName.
	PortName string
	// Log receives the transport's and yamux's messages.
	Log *logrus.Entry
}

// Listen waits for the port to appear (bounded by ctx), opens it for the rest
// of the agent's life and starts serving yamux sessions on it, one after the
// other as the host connects and reconnects.
func (t *SerialTransport) Listen(ctx context.Context) (net.Listener, error) {
	path, err := WaitPort(ctx, t.SysRoot, t.DevRoot, t.PortName)
	if err != nil {
		return nil, err
	}
	port, err := openSerialPort(path, t.Log)
	if err != nil {
		return nil, err
	}
	t.Log.WithField("port", path).Info("agent port open")
	return newYamuxListener(port, yamuxConfig(t.Log), t.Log), nil
}

// yamuxConfig is the agent's side of the yamux session.
//
//   - No keepalive: the host notices the VM's death itself (QEMU exits, the
//     socket closes), and pings would only wake an idle guest under TCG.
//   - MaxStreamWindowSize 4 MiB, up from 256 KiB: the window bounds the data
//     the host may send on one stream (stdin) before the agent acknowledges
//     it. Host to guest runs at ~240 MB/s under TCG, so a window of 256 KiB
//     is about 1 ms of data and any scheduling delay in the single vCPU
//     stalls the sender; 4 MiB covers ~16 ms. Larger buys little and costs
//     guest memory: a stream whose reader stalls can buffer a full window,
//     and guests are small. (The other direction is bounded by the host's
//     window, set by the proxy: 8 MiB, host memory being cheaper.)
//   - No connection write timeout (yamux wants a duration: a century). A
//     write that times out fails its stream but leaves its frame queued to
//     be sent later, so the timeout would corrupt streams, not protect
//     them; a host that stops reading is the host's to notice.
//   - StreamCloseTimeout stays at 5 minutes: once the agent has closed a
//     stream it has nothing more to send on it, so resetting it when the
//     host has not closed its side by then loses nothing and frees it.
func yamuxConfig(log *logrus.Entry) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.MaxStreamWindowSize = 4 << 20
	cfg.ConnectionWriteTimeout = 100 * 365 * 24 * time.Hour
	cfg.LogOutput = nil
	cfg.Logger = yamuxLogger{log.WithField("component", "yamux")}
	return cfg
}

// yamuxLogger sends yamux's messages to logrus, at warning level: yamux
// only logs errors.
type yamuxLogger struct{ log *logrus.Entry }

func (l yamuxLogger) Print(v ...any)                 { l.log.Warn(v...) }
func (l yamuxLogger) Printf(format string, v ...any) { l.log.Warnf(format, v...) }
func (l yamuxLogger) Println(v ...any)               { l.log.Warnln(v...) }

// yamuxListener runs yamux server sessions on a serial port, one after the
// other, and hands out the streams of the current one.
type yamuxListener struct {
	port *serialPort
	cfg  *yamux.Config
	log  *logrus.Entry

	streams chan net.Conn
	done    chan struct{}
	stopped chan struct{} // closed when run returns

	mu      sync.Mutex
	current *yamux.Session
	closed  bool
}

func newYamuxListener(port *serialPort, cfg *yamux.Config, log *logrus.Entry) *yamuxListener {
	l := &yamuxListener{
		port:    port,
		cfg:     cfg,
		log:     log,
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go l.run()
	return l
}

func (l *yamuxListener) run() {
	defer close(l.stopped)
	for n := 1; ; n++ {
		conn := l.port.session()
		sess, err := yamux.Server(conn, l.cfg)
		if err != nil {
			// Only an invalid configuration gets here.
			l.log.WithError(err).Error("starting yamux session")
			return
		}
		if !l.setCurrent(sess) {
			sess.Close()
			return
		}
		log := l.log.WithField("session", n)
		log.Debug("yamux session waiting for the host")
		l.acceptAll(sess)
		sess.Close()
		select {
		case <-l.done:
			return
		default:
		}
		if err := conn.err(); err != nil {
			log.WithError(err).Error("agent port failed; retrying in 1s")
			select {
			case <-l.done:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if conn.replaced() {
			log.Info("a new host connected")
		} else {
			log.Info("host disconnected; waiting for it to reconnect")
		}
	}
}

// acceptAll passes the session's streams on until the session ends.
func (l *yamuxListener) acceptAll(sess *yamux.Session) {
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		select {
		case l.streams <- st:
		case <-l.done:
			st.Close()
			return
		}
	}
}

func (l *yamuxListener) setCurrent(s *yamux.Session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.current = s
	return true
}

// Accept returns the next stream the host opens.
func (l *yamuxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.streams:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("accepting agent stream: %w", net.ErrClosed)
	}
}

// Close ends the current session and closes the port.
func (l *yamuxListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	sess := l.current
	l.mu.Unlock()
	if sess != nil {
		sess.Close()
	}
	<-l.stopped
	return l.port.Close()
}

// Addr names the transport.
func (l *yamuxListener) Addr() net.Addr { return serialAddr{} }

type serialAddr struct{}

func (serialAddr) Network() string { return "virtio-serial" }
func (serialAddr) String() string  { return "agent-port" }

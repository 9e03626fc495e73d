package agent

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// testLog logs to stderr with -v, and nowhere otherwise. (Not to t.Log:
// goroutines of yamux and ttrpc may log after the test has finished.)
func testLog(t *testing.T) *logrus.Entry {
	t.Helper()
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l).WithField("test", t.Name())
}

// fakePortDev behaves like the guest's end of a virtio-serial port as the
// driver implements it: what the host sends is queued in the guest; reads
// return queued data first, then 0 bytes at once while the host is
// disconnected, and block while it is connected; writes block while it is
// disconnected. The host's end of each connection is a net.Conn.
type fakePortDev struct {
	mu      sync.Mutex
	queue   []byte        // sent by the host, not read yet
	host    net.Conn      // our side of the current host connection; nil while disconnected
	changed chan struct{} // closed and replaced on every change
	rdl     time.Time
	wdl     time.Time
	closed  bool
}

func newFakePortDev() *fakePortDev {
	return &fakePortDev{changed: make(chan struct{})}
}

func (f *fakePortDev) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// connect plugs a host in and returns the host's end. Closing that end, or
// disconnect, unplugs it.
func (f *fakePortDev) connect() net.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connectLocked()
}

func (f *fakePortDev) connectLocked() net.Conn {
	hostEnd, ours := net.Pipe()
	f.host = ours
	f.notifyLocked()
	go f.pump(ours)
	return hostEnd
}

// pump queues what the host writes, until it disconnects.
func (f *fakePortDev) pump(c net.Conn) {
	buf := make([]byte, 4096) // the driver's buffers are 4 KiB
	for {
		n, err := c.Read(buf)
		f.mu.Lock()
		f.queue = append(f.queue, buf[:n]...)
		if err != nil && f.host == c {
			f.host = nil
		}
		f.notifyLocked()
		f.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// disconnect unplugs the current host.
func (f *fakePortDev) disconnect() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnectLocked()
}

func (f *fakePortDev) disconnectLocked() {
	if f.host != nil {
		f.host.Close()
		f.host = nil
		f.notifyLocked()
	}
}

// reconnect replaces the host at once: the guest cannot see a moment when
// no host is connected, as when the driver handles both control messages
// before the agent runs.
func (f *fakePortDev) reconnect() net.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnectLocked()
	return f.connectLocked()
}

func (f *fakePortDev) connected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.host != nil
}

func (f *fakePortDev) Read(b []byte) (int, error) {
	for {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return 0, os.ErrClosed
		}
		if len(f.queue) > 0 {
			n := copy(b, f.queue[:min(len(f.queue), 4096)])
			f.queue = f.queue[n:]
			f.mu.Unlock()
			return n, nil
		}
		if f.host == nil {
			f.mu.Unlock()
			return 0, io.EOF // what os.File makes of the driver's 0-byte read
		}
		ch, dl := f.changed, f.rdl
		f.mu.Unlock()
		if err := waitChange(ch, dl); err != nil {
			return 0, err
		}
	}
}

func (f *fakePortDev) Write(b []byte) (int, error) {
	total := 0
	for total < len(b) {
		f.mu.Lock()
		h, ch, dl, closed := f.host, f.changed, f.wdl, f.closed
		f.mu.Unlock()
		if closed {
			return total, os.ErrClosed
		}
		if h == nil {
			if err := waitChange(ch, dl); err != nil {
				return total, err
			}
			continue
		}
		// The driver writes at most 32 KiB at a time; what is left after
		// a disconnection goes to the next host.
		_ = h.SetWriteDeadline(dl)
		n, err := h.Write(b[total:min(len(b), total+32<<10)])
		total += n
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
	}
	return total, nil
}

// waitChange waits for ch to be closed or the deadline to pass.
func waitChange(ch chan struct{}, deadline time.Time) error {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-ch:
		return nil
	case <-timeout:
		return os.ErrDeadlineExceeded
	}
}

func (f *fakePortDev) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rdl = t
	f.notifyLocked()
	return nil
}

func (f *fakePortDev) SetWriteDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wdl = t
	f.notifyLocked()
	return nil
}

func (f *fakePortDev) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.disconnectLocked()
	f.notifyLocked()
	return nil
}

// poll waits for cond, failing the test after timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

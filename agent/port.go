package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// ErrPortNotFound is returned when no virtio-serial port has the name sought.
var ErrPortNotFound = errors.New("virtio-serial port not found")

// FindPort returns the device name (such as "vport0p1") of the virtio-serial
// port called name, from the names under sysRoot/class/virtio-ports (sysRoot
// is "/sys" in the guest). The guest has no udev, so there are no
// /dev/virtio-ports links: the device node is /dev/<device name>.
func FindPort(sysRoot, name string) (string, error) {
	dir := filepath.Join(sysRoot, "class", "virtio-ports")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("finding port %q: %w", name, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "name"))
		if err != nil {
			continue // a port without a name yet, or gone.
		}
		if strings.TrimSpace(string(b)) == name {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("finding port %q in %s: %w", name, dir, ErrPortNotFound)
}

// WaitPort waits until the port called name exists in sysRoot and its device
// node in devRoot, and returns the node's path. The kernel adds ports and
// their names asynchronously, from control messages QEMU sends after the
// driver is up, so at the time init starts they may not be there yet.
func WaitPort(ctx context.Context, sysRoot, devRoot, name string) (string, error) {
	const interval = 10 * time.Millisecond
	for {
		dev, err := FindPort(sysRoot, name)
		if err == nil {
			path := filepath.Join(devRoot, dev)
			if _, err = os.Stat(path); err == nil {
				return path, nil
			}
		}
		if !errors.Is(err, ErrPortNotFound) && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for port %q: %w (last: %w)", name, ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}

// portDevice is what serialPort needs of the port's file: an *os.File in the
// guest, a fake in tests. Deadlines interrupt a blocked read or write when a
// session ends, so that the next session never shares the file with it.
type portDevice interface {
	io.ReadWriteCloser
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// serialPort is the agent's end of the virtio-serial channel, opened once for
// the agent's whole life: the guest driver drops what the host sends while
// the port is closed.
//
// The host side comes and goes (the proxy starts after the VM, a probe may
// connect and leave before it). While it is disconnected, reads return 0
// bytes at once and writes block. serialPort turns this into a series of
// sessions, one per host connection, each for one yamux server session (see
// portSession).
type serialPort struct {
	dev portDevice
	log *logrus.Entry
	// pollMin and pollMax bound the polling interval while the host is
	// disconnected: a read cannot block until the host connects (poll(2)
	// reports POLLHUP at once), so the session sleeps and retries, backing off.
	pollMin, pollMax time.Duration
	// carry holds what the host sent that belongs to the next session: the
	// first frames of a new host connection the previous session detected.
	// Only touched by the session reading, under its rmu, and between
	// sessions.
	carry []byte
}

// openSerialPort opens the port's device node for reading and writing.
func openSerialPort(path string, log *logrus.Entry) (*serialPort, error) {
	// O_RDWR on one descriptor: the driver has one "guest connected" state
	// per port, so a second open would fail with EBUSY anyway. The runtime
	// puts the descriptor in its poller, so deadlines work.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening agent port: %w", err)
	}
	return newSerialPort(f, log), nil
}

func newSerialPort(dev portDevice, log *logrus.Entry) *serialPort {
	return &serialPort{dev: dev, log: log, pollMin: 5 * time.Millisecond, pollMax: 100 * time.Millisecond}
}

// Close closes the port's file. Only for the end of the agent's life.
func (p *serialPort) Close() error {
	return p.dev.Close()
}

// session returns a connection over the port for one host connection, to
// hand to yamux. Only one session may be open at a time; close it before
// asking for the next. Closing it does not close the port.
func (p *serialPort) session() *portSession {
	return &portSession{port: p, buf: make([]byte, portReadBuffer), closed: make(chan struct{})}
}

// portReadBuffer is the size of a session's read buffer. A read of the port
// returns at most one of the driver's 4 KiB buffers, whatever its size
// (host to guest runs at ~240 MB/s under TCG for that reason), so larger
// buffers buy nothing on this side; writes are passed on whole (the driver
// takes up to 32 KiB per write(2), and yamux writes a frame at a time).
const portReadBuffer = 64 << 10

// portSession is the port seen by one host connection.
//
// Reads wait while the host has not sent anything yet. After that, the
// session ends (io.EOF) when the host goes away: at the first 0-byte read,
// or, when the host reconnected so fast that the agent never saw a 0-byte
// read, at the first frame of the new connection. A new yamux client always
// starts by opening a stream with an ID this session has already seen (IDs
// only grow within a session, so in one session such a frame is a protocol
// error anyway); the session follows the yamux frames the host sends to spot
// it, and leaves it to the next session.
//
// The other direction has no such marker: what this session writes after
// the host left and before the session ends goes to the next host, whose
// yamux client discards frames for streams it does not know. Hosts should
// keep their session for the sandbox's life and close their streams before
// they disconnect.
type portSession struct {
	port *serialPort

	rmu sync.Mutex // held by Read; guards the fields below up to wmu
	// buf[r:w] was read from the port and not yet returned; its first
	// ready bytes have been checked by the frame tracker.
	buf         []byte
	r, w, ready int
	frames      frameTracker
	newHost     bool  // buf[r+ready:w] starts a new host connection
	sawData     bool  // the host has sent something in this session
	hardErr     error // the read error that ended the session, other than a disconnection

	wmu sync.Mutex // held by Write

	closeOnce sync.Once
	closed    chan struct{}
}

// Read returns what the host sent, frame by frame as far as the session's
// checks go; see portSession.
func (s *portSession) Read(b []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for {
		if s.ready > 0 {
			n := copy(b, s.buf[s.r:s.r+min(s.ready, len(b))])
			s.r += n
			s.ready -= n
			return n, nil
		}
		if s.newHost {
			s.port.carry = append([]byte(nil), s.buf[s.r:s.w]...)
			s.r, s.w = 0, 0
			return 0, io.EOF
		}
		if s.scan() {
			continue
		}
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
}

// scan runs the frame tracker over the unchecked bytes, and reports whether
// it made any ready or found a new host.
func (s *portSession) scan() bool {
	pos, end := s.r+s.ready, s.w
	for pos < end {
		n, newHost := s.frames.advance(s.buf[pos:end])
		if newHost {
			s.newHost = true
			break
		}
		if n == 0 {
			break // a partial header: wait for the rest
		}
		pos += n
	}
	progressed := pos > s.r+s.ready || s.newHost
	s.ready = pos - s.r
	return progressed
}

// fill appends to buf what the host sends next: the carry from the previous
// session, or a read of the port, waiting while the host has not sent
// anything in this session yet.
func (s *portSession) fill() error {
	if s.r == s.w {
		s.r, s.w = 0, 0
	} else if s.w == len(s.buf) {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	if len(s.port.carry) > 0 {
		n := copy(s.buf[s.w:], s.port.carry)
		s.port.carry = s.port.carry[n:]
		s.w += n
		s.sawData = true
		return nil
	}
	delay := s.port.pollMin
	for {
		select {
		case <-s.closed:
			return io.EOF
		default:
		}
		n, err := s.port.dev.Read(s.buf[s.w:])
		if n > 0 {
			s.w += n
			s.sawData = true
			return nil
		}
		switch {
		case err == nil || errors.Is(err, io.EOF):
			// The host side is not connected.
			if s.sawData {
				return io.EOF
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Close interrupted the read; the loop sees s.closed.
			continue
		default:
			s.hardErr = err
			return fmt.Errorf("reading agent port: %w", err)
		}
		select {
		case <-s.closed:
			return io.EOF
		case <-time.After(delay):
		}
		delay = min(2*delay, s.port.pollMax)
	}
}

// Write writes all of b to the port; it blocks while the host is
// disconnected, until the host reconnects or the session is closed.
func (s *portSession) Write(b []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	select {
	case <-s.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	n, err := s.port.dev.Write(b)
	if err != nil {
		select {
		case <-s.closed:
			return n, io.ErrClosedPipe
		default:
		}
		return n, fmt.Errorf("writing agent port: %w", err)
	}
	return n, nil
}

// Close ends the session without closing the port: it interrupts a blocked
// read or write and waits for it to return, so that the next session is
// alone on the port.
func (s *portSession) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		dev := s.port.dev
		now := time.Now()
		rerr := dev.SetReadDeadline(now)
		werr := dev.SetWriteDeadline(now)
		if rerr == nil {
			s.rmu.Lock()
			_ = dev.SetReadDeadline(time.Time{})
			s.rmu.Unlock()
		} else if !errors.Is(rerr, os.ErrClosed) && !errors.Is(rerr, io.ErrClosedPipe) {
			s.port.log.WithError(rerr).Warn("cannot interrupt reads on the agent port; a stale read may take the next session's data")
		}
		if werr == nil {
			s.wmu.Lock()
			_ = dev.SetWriteDeadline(time.Time{})
			s.wmu.Unlock()
		}
	})
	return nil
}

// replaced reports whether the session ended because a new host connected.
func (s *portSession) replaced() bool {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return s.newHost
}

// err returns the read error that ended the session, if it was not a
// disconnection of the host.
func (s *portSession) err() error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return s.hardErr
}

// yamux frame header (github.com/hashicorp/yamux spec.md): version, type,
// flags (uint16), stream ID (uint32), length (uint32), big-endian. Data
// frames are followed by length bytes of data.
const (
	yamuxHeaderSize       = 12
	yamuxTypeData         = 0
	yamuxTypeWindowUpdate = 1
	yamuxFlagSYN          = 1
)

// frameTracker follows the frame boundaries of the yamux stream the host
// sends, and spots the first frame of a new yamux client.
type frameTracker struct {
	body   uint32 // data bytes left in the current frame
	maxSYN uint32 // highest stream ID the host opened
	lost   bool   // the host sent something that is not yamux: stop checking
}

// advance checks the start of b: it returns how many bytes of b are checked
// (0 when b holds only part of a header), or newHost when b starts with a
// frame that opens a stream ID already used, which only a new client sends.
func (t *frameTracker) advance(b []byte) (n int, newHost bool) {
	if t.body > 0 {
		n := min(uint32(len(b)), t.body)
		t.body -= n
		return int(n), false
	}
	if len(b) > 0 && b[0] != 0 {
		// Not a yamux version 0 header: pass it on for yamux to fail on.
		t.lost = true
	}
	if t.lost {
		return len(b), false
	}
	if len(b) < yamuxHeaderSize {
		return 0, false
	}
	typ := b[1]
	flags := binary.BigEndian.Uint16(b[2:4])
	id := binary.BigEndian.Uint32(b[4:8])
	length := binary.BigEndian.Uint32(b[8:12])
	if (typ == yamuxTypeData || typ == yamuxTypeWindowUpdate) && flags&yamuxFlagSYN != 0 {
		if id <= t.maxSYN {
			return 0, true
		}
		t.maxSYN = id
	}
	if typ == yamuxTypeData {
		t.body = length
	}
	return yamuxHeaderSize, false
}

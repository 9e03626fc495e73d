package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Every stream (a yamux stream or a vsock connection) that the host opens to the
// agent starts with a header saying what it carries: the ttrpc API, one raw
// stdio stream of one process, or one forwarded TCP connection. Bulk stdio
// never goes through RPC calls.
//
// Wire format:
//
//	magic "CCN1" | kind (1 byte) | stdio (1 byte) |
//	uint16 len | container ID | uint16 len | exec ID |
//	uint16 port (StreamPortForward only)
//
// Integers are big-endian. IDs are at most MaxStreamIDLen bytes.

// StreamKind says what a stream carries.
type StreamKind uint8

const (
	// StreamRPC carries ttrpc requests to the Agent service.
	StreamRPC StreamKind = 1
	// StreamStdio carries one stdio stream of one process, as raw bytes.
	StreamStdio StreamKind = 2
	// StreamPortForward carries one TCP connection to a port of the guest's
	// loopback (the pod's network namespace), as CRI port-forward asks:
	// the agent dials it, answers with one PortForwardStatus byte and,
	// once connected, copies raw bytes both ways.
	StreamPortForward StreamKind = 3
)

// PortForwardStatus is the agent's one-byte answer on a StreamPortForward
// stream.
type PortForwardStatus uint8

const (
	// PortForwardConnected: the agent is connected; the stream carries the
	// connection's bytes from now on.
	PortForwardConnected PortForwardStatus = 0
	// PortForwardRefused: nothing listens on the port (on 127.0.0.1 nor
	// ::1); the agent closes the stream.
	PortForwardRefused PortForwardStatus = 1
	// PortForwardFailed: dialing failed otherwise; the agent closes the
	// stream.
	PortForwardFailed PortForwardStatus = 2
)

// Stdio names one of a process's standard streams.
type Stdio uint8

const (
	// Stdin is written by the host; closing the host's write side delivers EOF.
	Stdin Stdio = 0
	// Stdout is read by the host.
	Stdout Stdio = 1
	// Stderr is read by the host.
	Stderr Stdio = 2
	// Terminal is the process's pty: both directions on one stream.
	Terminal Stdio = 3
)

// String returns the stream's name.
func (s Stdio) String() string {
	switch s {
	case Stdin:
		return "stdin"
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case Terminal:
		return "terminal"
	}
	return fmt.Sprintf("stdio(%d)", uint8(s))
}

// MaxStreamIDLen bounds the IDs in a header.
const MaxStreamIDLen = 1024

var streamMagic = [4]byte{'C', 'C', 'N', '1'}

// ErrBadStreamHeader is returned for a stream that does not start with a valid header.
var ErrBadStreamHeader = errors.New("bad stream header")

// StreamHeader starts every stream the host opens to the agent.
type StreamHeader struct {
	Kind StreamKind
	// ContainerID and ExecID name the process (ExecID is empty for the
	// container's init process); only for StreamStdio.
	ContainerID string
	ExecID      string
	Stdio       Stdio
	// Port is the guest's TCP port to dial; only for StreamPortForward.
	Port uint16
}

// WriteStreamHeader writes h to w in one write.
func WriteStreamHeader(w io.Writer, h StreamHeader) error {
	if len(h.ContainerID) > MaxStreamIDLen || len(h.ExecID) > MaxStreamIDLen {
		return fmt.Errorf("writing stream header: %w: id longer than %d bytes", ErrBadStreamHeader, MaxStreamIDLen)
	}
	buf := make([]byte, 0, 12+len(h.ContainerID)+len(h.ExecID))
	buf = append(buf, streamMagic[:]...)
	buf = append(buf, byte(h.Kind), byte(h.Stdio))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(h.ContainerID)))
	buf = append(buf, h.ContainerID...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(h.ExecID)))
	buf = append(buf, h.ExecID...)
	if h.Kind == StreamPortForward {
		buf = binary.BigEndian.AppendUint16(buf, h.Port)
	}
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("writing stream header: %w", err)
	}
	return nil
}

// ReadStreamHeader reads and validates the header at the start of r.
func ReadStreamHeader(r io.Reader) (StreamHeader, error) {
	var fixed [8]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return StreamHeader{}, fmt.Errorf("reading stream header: %w", err)
	}
	if [4]byte(fixed[:4]) != streamMagic {
		return StreamHeader{}, fmt.Errorf("reading stream header: %w: bad magic %q", ErrBadStreamHeader, fixed[:4])
	}
	h := StreamHeader{Kind: StreamKind(fixed[4]), Stdio: Stdio(fixed[5])}
	switch h.Kind {
	case StreamRPC, StreamStdio, StreamPortForward:
	default:
		return StreamHeader{}, fmt.Errorf("reading stream header: %w: unknown kind %d", ErrBadStreamHeader, h.Kind)
	}
	if h.Stdio > Terminal {
		return StreamHeader{}, fmt.Errorf("reading stream header: %w: unknown stdio %d", ErrBadStreamHeader, h.Stdio)
	}
	cidLen := int(binary.BigEndian.Uint16(fixed[6:8]))
	var err error
	if h.ContainerID, err = readID(r, cidLen); err != nil {
		return StreamHeader{}, err
	}
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return StreamHeader{}, fmt.Errorf("reading stream header: %w", err)
	}
	if h.ExecID, err = readID(r, int(binary.BigEndian.Uint16(l[:]))); err != nil {
		return StreamHeader{}, err
	}
	if h.Kind == StreamPortForward {
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return StreamHeader{}, fmt.Errorf("reading stream header: %w", err)
		}
		h.Port = binary.BigEndian.Uint16(l[:])
		if h.Port == 0 {
			return StreamHeader{}, fmt.Errorf("reading stream header: %w: port 0", ErrBadStreamHeader)
		}
	}
	return h, nil
}

func readID(r io.Reader, n int) (string, error) {
	if n > MaxStreamIDLen {
		return "", fmt.Errorf("reading stream header: %w: id of %d bytes", ErrBadStreamHeader, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("reading stream header: %w", err)
	}
	return string(b), nil
}

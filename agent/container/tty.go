package container

import (
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// newTerminalIO sets lp up to get a terminal: runc init creates the pty in
// the container and sends its master over the console socket, which
// afterStart reads.
func newTerminalIO(lp *libcontainer.Process, log *logrus.Entry) (*processIO, error) {
	parent, child, err := utils.NewSockPair("console")
	if err != nil {
		return nil, fmt.Errorf("creating console socket: %w", err)
	}
	lp.ConsoleSocket = child
	return &processIO{
		log:         log,
		terminal:    true,
		consoleSock: parent,
		childEnds:   []*os.File{child},
	}, nil
}

// recvMaster receives the pty master runc init sent on sock, and returns it
// nonblocking, in the runtime's poller (so that reads can be interrupted).
func recvMaster(sock *os.File) (*os.File, error) {
	oob := make([]byte, unix.CmsgSpace(4))
	name := make([]byte, 4096)
	var (
		n, oobn int
		err     error
	)
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("receiving pty master: %w", err)
	}
	cerr := rc.Control(func(fd uintptr) {
		for {
			n, oobn, _, _, err = unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
			if err != unix.EINTR {
				return
			}
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("receiving pty master: %w", err)
	}
	if n == 0 && oobn == 0 {
		return nil, fmt.Errorf("receiving pty master: the container did not send one")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receiving pty master: bad control message (%d, %v)", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receiving pty master: bad descriptors (%d, %v)", len(fds), err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("receiving pty master: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// resize sets the terminal's window size; the kernel sends SIGWINCH to the
// terminal's foreground process group.
func (pio *processIO) resize(rows, cols uint16) error {
	if !pio.terminal {
		return preconditionf("the process has no terminal")
	}
	if pio.master == nil {
		return preconditionf("the terminal is not ready")
	}
	rc, err := pio.master.SyscallConn()
	if err != nil {
		return fmt.Errorf("resizing terminal: %w", err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return fmt.Errorf("resizing terminal: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("resizing terminal: %w", ierr)
	}
	return nil
}

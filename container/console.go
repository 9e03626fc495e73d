package container

import (
	"fmt"
	"net"
	"os"

	"github.com/creack/pty"

	"golang.org/x/sys/unix"
)

// openPty opens a new pseudo-terminal pair: the master, which goes to the
// caller (over --console-socket) or stays with the runtime, and the slave,
// on which the relay runs.
func openPty() (master, slave *os.File, err error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("opening a pty: %w", err)
	}
	return m, s, nil
}

// control runs fn on f's descriptor.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// sendConsole connects to the caller's --console-socket and sends it the
// pty master, as runc does (utils.SendFile): one message whose data is
// the file's name and whose SCM_RIGHTS carry its descriptor.
func sendConsole(socketPath string, master *os.File) error {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socketPath, Net: "unix"})
	if err != nil {
		return fmt.Errorf("connecting to the console socket: %w", err)
	}
	defer conn.Close()
	if err := sendFile(conn, master); err != nil {
		return fmt.Errorf("sending the console to %s: %w", socketPath, err)
	}
	return nil
}

// sendFile sends f over conn in runc's format.
func sendFile(conn *net.UnixConn, f *os.File) error {
	var serr error
	err := control(f, func(fd int) error {
		_, _, serr = conn.WriteMsgUnix([]byte(f.Name()), unix.UnixRights(fd), nil)
		return nil
	})
	if err != nil {
		return err
	}
	return serr
}

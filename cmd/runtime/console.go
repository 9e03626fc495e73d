package main

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// openPty opens a new pseudo-terminal pair: the master, which goes to the
// caller (over --console-socket) or stays with the runtime, and the slave,
// on which the shim runs.
func openPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening a pty: %w", err)
	}
	var n int
	if err := control(m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlocking the pty: %w", err)
		}
		var err error
		if n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN); err != nil {
			return fmt.Errorf("naming the pty: %w", err)
		}
		return nil
	}); err != nil {
		m.Close()
		return nil, nil, err
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("opening the pty's slave: %w", err)
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

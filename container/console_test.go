package container

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSendConsole sends a pty master over a console socket as runc does
// and checks, as containerd's receiver would, that the other end gets a
// working master: what it writes comes out of the slave.
func TestSendConsole(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	master, slave, err := openPty()
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	got := make(chan *os.File, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			errc <- err
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			errc <- err
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			errc <- err
			return
		}
		got <- os.NewFile(uintptr(fds[0]), string(buf[:n]))
	}()
	if err := sendConsole(sock, master); err != nil {
		t.Fatal(err)
	}
	master.Close()
	var recv *os.File
	select {
	case recv = <-got:
	case err := <-errc:
		t.Fatal(err)
	}
	defer recv.Close()
	if recv.Name() != "/dev/ptmx" {
		t.Errorf("name %q", recv.Name())
	}
	// Raw slave, so that bytes pass unchanged.
	if err := control(slave, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		tio.Lflag &^= unix.ICANON | unix.ECHO
		return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := recv.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := slave.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("slave read %q, %v", buf, err)
	}
}

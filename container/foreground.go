package container

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/relay"
)

// WaitForeground waits for a relay the runtime started in the foreground
// (run, exec without --detach) and returns the process's exit status. It
// forwards the signals the runtime gets to the relay, which forwards them
// to the process, as runc forwards them to the container; with a pty of
// its own it relays its stdio to the pty master, in raw mode when stdin is
// a terminal, and passes window size changes on.
func (rp *RelayProcess) WaitForeground() int {
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	defer signal.Stop(sigs)

	var outDone chan struct{}
	if rp.master != nil {
		if restore, err := relay.MakeRaw(os.Stdin); err == nil {
			defer restore()
		}
		copySize(os.Stdin, rp.master)
		go func() { _, _ = io.Copy(rp.master, os.Stdin) }()
		outDone = make(chan struct{})
		go func() {
			_, _ = io.Copy(os.Stdout, rp.master)
			close(outDone)
		}()
	}
	exited := make(chan int, 1)
	go func() { exited <- exitStatus(rp.cmd.Wait()) }()
	for {
		select {
		case status := <-exited:
			if outDone != nil {
				// The master reads EIO once the slave's last holder
				// (the relay) is gone, after what it buffered.
				select {
				case <-outDone:
				case <-time.After(2 * time.Second):
				}
				rp.master.Close()
			}
			return status
		case sig := <-sigs:
			switch sig {
			case unix.SIGCHLD, unix.SIGURG, unix.SIGPIPE:
			case unix.SIGWINCH:
				if rp.master != nil {
					copySize(os.Stdin, rp.master)
				}
			default:
				if s, ok := sig.(syscall.Signal); ok {
					_ = unix.Kill(rp.Pid, s)
				}
			}
		}
	}
}

// exitStatus turns a child's Wait error into runc's exit status.
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 255
}

// copySize gives the pty master the size of the terminal from, if it is
// one.
func copySize(from, to *os.File) {
	_ = control(from, func(fd int) error {
		ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if err != nil {
			return err
		}
		return control(to, func(tfd int) error { return unix.IoctlSetWinsize(tfd, unix.TIOCSWINSZ, ws) })
	})
}

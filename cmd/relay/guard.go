package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/relay"
)

// A relay's PID is its process's PID to the caller, and a SIGKILL to that
// PID must kill the process, as it does with runc: conmon SIGKILLs an
// exec-sync's PID when it times out (a Kubernetes exec probe) and a
// container's when `conmon -T` (podman run --timeout) expires,
// containerd's runc shim SIGKILLs an exec's PID to kill it, the host's OOM
// killer picks one. A relay cannot catch SIGKILL to forward it. So every
// relay has guards: two more cocoon-relay processes, each in its own
// session with no stdio, that cocoon-runtime starts in its own PID
// namespace (the relay's dies with the relay). Each holds the read end of
// the relay's alive pipe, whose write end only the relay holds (--alive-fd).
// The relay writes relay.AliveBytes to it before it exits by itself; a guard
// that reads end of file without a byte knows that its relay died
// unannounced, and SIGKILLs the process in the guest. The two guards hold
// lifelines to each other (relay.Lifeline): a guard whose partner dies
// while the relay runs (killed first, by mistake or on purpose) starts
// another at once, so that a later SIGKILL of the relay still kills the
// process in the guest.

// announceExit tells the relay's guards, through its alive pipe (nil
// without --alive-fd), that the relay exits by itself.
func announceExit(alive *os.File, log *logrus.Entry) {
	if alive == nil {
		return
	}
	if _, err := alive.Write(relay.AliveBytes); err != nil {
		log.WithError(err).Warn("telling the guards that the relay exits")
	}
	alive.Close()
}

// runGuard is cocoon-relay --guard-fd: it waits for its relay to exit and,
// if the relay died without writing to the alive pipe, kills the process.
// Meanwhile it replaces its partner guard whenever that one dies.
func runGuard(c *cli.Context) error {
	fd := c.Int("guard-fd")
	if fd != relay.GuardFD {
		// A partner starts with the same command line and fds.
		return fmt.Errorf("--guard-fd %d: want %d", fd, relay.GuardFD)
	}
	if _, err := relay.CloseInheritedFDs(fd, fd+1, fd+2); err != nil {
		return err
	}
	log, err := openLog(c.String("log"), c.String("log-format"), c.Bool("debug"), os.Getpid())
	if err != nil {
		return err
	}
	log = log.WithFields(logrus.Fields{"container": c.String("container"), "exec": c.String("exec"), "guard": true})
	alive := os.NewFile(uintptr(fd), "alive")
	defer alive.Close()
	l := relay.Lifeline{In: os.NewFile(uintptr(fd+1), "lifeline-in"), Out: os.NewFile(uintptr(fd+2), "lifeline-out")}
	defer func() { l.Close() }()
	// A partner that dies young is replaced a second after it started, not
	// at once, lest one that cannot start spin.
	started, replace := time.Now(), true
	for {
		timeout := -1
		if l.In == nil && replace {
			if wait := time.Until(started.Add(time.Second)); wait > 0 {
				timeout = int(wait.Milliseconds()) + 1
			} else {
				started = time.Now()
				if l, err = startPartner(alive); err != nil {
					log.WithError(err).Error("replacing the partner guard: if this guard dies too, a SIGKILL of the relay leaves its process running")
					replace = false
				}
			}
		}
		fds := []unix.PollFd{{Fd: int32(alive.Fd()), Events: unix.POLLIN}, {Fd: -1}}
		if l.In != nil {
			fds[1].Fd = int32(l.In.Fd())
			fds[1].Events = unix.POLLIN
		}
		if _, err := unix.Poll(fds, timeout); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("guard: %w", err)
		}
		// The relay first: a partner that has seen the relay exit may be
		// gone already.
		if fds[0].Revents != 0 {
			break
		}
		if fds[1].Revents != 0 {
			l.Close()
			l = relay.Lifeline{}
			log.Warn("the partner guard died: starting another")
		}
	}
	buf := make([]byte, 1)
	n, err := alive.Read(buf)
	if n == 1 {
		return nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		log.WithError(err).Warn("reading the alive pipe")
	}
	log.Info("the relay died without the process's exit: killing the process")
	d, err := relay.NewDialer(c.String("proxy-socket"), c.String("vsock"))
	if err != nil {
		return err
	}
	scale := time.Duration(max(c.Uint("timeout-scale"), 1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second*scale)
	defer cancel()
	agent, err := relay.Connect(ctx, d, agentclient.Options{Scale: scale, Log: log})
	if err != nil {
		return err
	}
	defer agent.Close()
	return relay.KillProcess(ctx, agent, c.String("container"), c.String("exec"))
}

// startPartner starts a guard with this guard's command line and alive pipe,
// and returns this guard's lifeline to it. The partner is reaped here.
func startPartner(alive *os.File) (relay.Lifeline, error) {
	self, err := os.Executable()
	if err != nil {
		return relay.Lifeline{}, fmt.Errorf("starting a guard: %w", err)
	}
	mine, theirs, err := relay.NewLifelines()
	if err != nil {
		return relay.Lifeline{}, err
	}
	defer theirs.Close()
	cmd, err := relay.StartGuard(self, os.Args, alive, theirs)
	if err != nil {
		mine.Close()
		return relay.Lifeline{}, err
	}
	go func(cmd *exec.Cmd) { _ = cmd.Wait() }(cmd)
	return mine, nil
}

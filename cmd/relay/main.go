// Command cocoon-relay relays one process of a cocoon container: the
// container's init process or one exec'd process. It is what runc's callers
// wait for: cocoon-runtime create and exec start it detached and write its
// PID to --pid-file, so containerd-shim-runc-v2, conmon or Docker wait for
// it, take its exit status for the process's and signal it. It relays its
// stdio (or its terminal) to the process's streams in the guest, forwards
// the signals it receives, and exits with the process's status, or 255 when
// the sandbox goes away.
//
// How cocoon-runtime starts it:
//
//   - fds 0, 1 and 2 are the process's stdio as the caller gave them to the
//     runtime (pipes, FIFOs, files or /dev/null); with --terminal all three
//     are the pty slave whose master went to --console-socket, opened
//     read-write. Other descriptors are closed at start unless --ready-fd
//     or --alive-fd names them; pass the ready pipe as ExtraFiles[0] (fd 3),
//     which also replaces a descriptor leaked as fd 3.
//   - SysProcAttr{Setsid: true}, and with --terminal also Setctty: true,
//     Ctty: 0, so that the slave is the relay's controlling terminal: the
//     relay then gets SIGWINCH when the caller resizes the master (and SIGHUP
//     when it closes it, which it forwards).
//   - With --own-proc, also Cloneflags CLONE_NEWPID|CLONE_NEWNS: the relay
//     is PID 1 of a PID namespace of its own and mounts its /proc in a
//     mount namespace of its own (see ownproc.go), so that what lists the
//     processes of the container PID's /proc (podman top) finds the relay
//     alone, not the host's processes.
//   - No Pdeathsig: the relay outlives the runtime. The environment is not
//     used. With --alive-fd (ExtraFiles[1], fd 4), the runtime starts two
//     guards (cocoon-relay --guard-fd) once the relay is ready: they kill the
//     process in the guest should the relay be SIGKILLed (see guard.go).
//   - The process must have been created (CreateContainer or ExecProcess)
//     with the api.StdioConfig that matches --stdin, --stdout and --stderr
//     (relay.AttachedStdio computes both from the same files).
//   - With --ready-fd, the runtime reads the pipe to its end: "ready\n"
//     means the streams are attached (start the process now); anything else
//     is the relay's error, and the relay exits 255.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/relay"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

func main() {
	// Catch every signal first: none may take its default action (a
	// SIGTERM is the process's, not the relay's), and those that arrive
	// before the relay is connected wait in the channel.
	if len(os.Args) == 2 && os.Args[1] == relay.BalloonArg {
		if err := relay.RunBalloon(); err != nil {
			fmt.Fprintf(os.Stderr, "cocoon-relay: %v\n", err)
			os.Exit(1)
		}
		return
	}
	sigs := make(chan os.Signal, 128)
	signal.Notify(sigs)
	status := 0 // --help
	if err := newApp(sigs, &status).Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "cocoon-relay: %v\n", err)
		os.Exit(relay.StatusLost)
	}
	os.Exit(status)
}

// newApp returns the command line application; its action stores the
// process's exit status in status.
func newApp(sigs <-chan os.Signal, status *int) *cli.App {
	return &cli.App{
		Name:            "cocoon-relay",
		Usage:           "relay one process of a cocoon container: stdio, signals, exit status",
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "proxy-socket", Usage: "reach the agent through the sandbox's cocoon-proxy socket `PATH`"},
			&cli.StringFlag{Name: "vsock", Usage: "reach the agent over vsock at `CID:PORT`"},
			&cli.StringFlag{Name: "container", Usage: "the container's `ID` (required)"},
			&cli.StringFlag{Name: "exec", Usage: "the exec'd process's `ID`; empty for the container's init process"},
			&cli.BoolFlag{Name: "terminal", Usage: "fds 0, 1 and 2 are a pty slave: relay it to the process's terminal"},
			&cli.BoolFlag{Name: "stdin", Usage: "attach the process's stdin to fd 0 (default: unless fd 0 is /dev/null)"},
			&cli.BoolFlag{Name: "stdout", Usage: "attach the process's stdout to fd 1 (default: unless fd 1 is /dev/null)"},
			&cli.BoolFlag{Name: "stderr", Usage: "attach the process's stderr to fd 2 (default: unless fd 2 is /dev/null)"},
			&cli.IntFlag{Name: "ready-fd", Value: -1, Usage: "write \"ready\" (or the error) to descriptor `FD` once attached, and close it"},
			&cli.UintFlag{Name: "timeout-scale", Value: 1, Usage: "multiply every timeout by `N` (10 under TCG)"},
			&cli.StringFlag{Name: "log", Usage: "append logs to `FILE` (default: none)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.BoolFlag{Name: "debug", Usage: "log debug messages"},
			&cli.BoolFlag{Name: "own-proc", Usage: "the relay is PID 1 of a PID namespace and in a mount namespace of its own: mount its /proc there"},
			&cli.StringFlag{Name: "root", Usage: "with --own-proc: the container's root file system on the host, made the root of the relay's mount namespace"},
			&cli.IntFlag{Name: "alive-fd", Value: -1, Usage: "write to descriptor `FD`, the guards' alive pipe, before exiting by itself"},
			&cli.IntFlag{Name: "oom-cgroup-fd", Value: -1, Usage: "descriptor `FD` is the container's memory cgroup on the host: a guest OOM kill of the process is mirrored there (see relay.MirrorOOM)"},
			&cli.IntFlag{Name: "guard-fd", Value: -1, Usage: "run as a guard of a relay: SIGKILL the process if descriptor `FD` (3) ends without a byte; FD+1 and FD+2 are the lifeline to the partner guard (see guard.go)"},
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return err },
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected arguments: %q", c.Args().Slice())
			}
			if c.String("container") == "" {
				return fmt.Errorf("no --container given")
			}
			if c.Int("guard-fd") >= 0 {
				return runGuard(c)
			}
			s, err := run(c, sigs)
			*status = s
			return err
		},
	}
}

// mirrorOOMTimeout bounds mirroring an OOM kill, at hardware speed.
const mirrorOOMTimeout = 5 * time.Second

// oomSettle is how long the relay waits after mirroring an OOM kill
// before it exits: the watcher of the cgroup (the runc shim's OOM
// epoller, conmon) reports the OOM from a loop of its own, and the exit
// must come after it (Docker's OOMKilled is the OOM event seen before the
// exit's).
const oomSettle = 200 * time.Millisecond

// mirrorOOM returns the relay's Config.OnOOM: the guest's OOM kill is
// mirrored in the container's memory cgroup on the host, dir, where
// Docker's shim and conmon look for one (relay.MirrorOOM).
func mirrorOOM(dir *os.File, scale time.Duration, log *logrus.Entry) func() {
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), scale*mirrorOOMTimeout)
		defer cancel()
		if err := relay.MirrorOOM(ctx, dir, log); err != nil {
			log.WithError(err).Warn("the host will not see the guest's oom kill")
			return
		}
		time.Sleep(oomSettle)
	}
}

// run connects to the agent and relays the process; it returns the exit
// status, and an error already reported.
func run(c *cli.Context, sigs <-chan os.Signal) (int, error) {
	ready := newReadyPipe(c.Int("ready-fd"))
	alive := aliveFile(c.Int("alive-fd"))
	pid := os.Getpid()
	if c.Bool("own-proc") {
		var err error
		if pid, err = mountOwnProc(); err != nil {
			ready.fail(err)
			return relay.StatusLost, err
		}
	}
	closed, fdErr := relay.CloseInheritedFDs(ready.fd(), c.Int("alive-fd"), c.Int("oom-cgroup-fd"))
	log, err := openLog(c.String("log"), c.String("log-format"), c.Bool("debug"), pid)
	if err != nil {
		ready.fail(err)
		return relay.StatusLost, err
	}
	// Whatever ends the relay from here on, it exits by itself.
	defer announceExit(alive, log)
	log = log.WithField("container", c.String("container"))
	if e := c.String("exec"); e != "" {
		log = log.WithField("exec", e)
	}
	if fdErr != nil {
		log.WithError(fdErr).Warn("closing inherited descriptors")
	} else if len(closed) > 0 {
		log.WithField("fds", closed).Debug("closed inherited descriptors")
	}
	fail := func(err error) (int, error) {
		ready.fail(err)
		log.WithError(err).Error("exiting")
		fmt.Fprintf(os.Stderr, "cocoon-relay: %v\n", err)
		return relay.StatusLost, nil // reported
	}

	sock := c.String("proxy-socket")
	if root := c.String("root"); root != "" {
		if !c.Bool("own-proc") {
			return fail(errors.New("--root needs --own-proc"))
		}
		var dir *os.File
		if sock, dir, err = enterRoot(root, sock); err != nil {
			return fail(err)
		}
		if dir != nil {
			defer dir.Close()
		}
		log.WithField("root", root).Debug("the relay's root is the container's")
	}
	d, err := relay.NewDialer(sock, c.String("vsock"))
	if err != nil {
		return fail(err)
	}
	scale := time.Duration(max(c.Uint("timeout-scale"), 1))
	ctx := context.Background()
	agent, err := relay.Connect(ctx, d, agentclient.Options{Scale: scale, Log: log})
	if err != nil {
		return fail(err)
	}
	defer agent.Close()

	cfg := relay.Config{
		ContainerID: c.String("container"),
		ExecID:      c.String("exec"),
		Signals:     sigs,
		Ready:       ready.ok,
		Scale:       scale,
		Log:         log,
	}
	if fd := c.Int("oom-cgroup-fd"); fd >= 0 {
		cfg.OnOOM = mirrorOOM(os.NewFile(uintptr(fd), "oom-cgroup"), scale, log)
	}
	attached := func(flag string, f *os.File) bool {
		if c.IsSet(flag) {
			return c.Bool(flag)
		}
		return relay.IsAttached(f)
	}
	if c.Bool("terminal") {
		cfg.Console = os.Stdin
		cfg.Stdout = os.Stdout
	} else {
		if attached("stdin", os.Stdin) {
			cfg.Stdin = os.Stdin
		}
		if attached("stdout", os.Stdout) {
			cfg.Stdout = os.Stdout
		}
		if attached("stderr", os.Stderr) {
			cfg.Stderr = os.Stderr
		}
	}
	log.WithField("terminal", cfg.Console != nil).Debug("relaying")
	status, err := relay.Run(ctx, agent, cfg)
	if err != nil {
		return fail(err)
	}
	log.WithField("status", status).Debug("process exited")
	return status, nil
}

// Command cocoon-proxy owns the agent channel of one sandbox: it connects to
// the unix socket that QEMU serves for the agent's virtio-serial port, holds
// the yamux session on it, and serves a unix socket on which every connection
// becomes one stream to the agent. It exits 0 when the VM goes away.
//
// `cocoon-proxy forward` is the sandbox's port forwarder (CRI
// port-forward): see forward.go.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

func main() {
	// The proxy runs detached: a vanished terminal or log reader must not
	// kill it.
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := newApp().RunContext(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cocoon-proxy: %v\n", err)
		os.Exit(1)
	}
}

// newApp returns the command line application.
func newApp() *cli.App {
	return &cli.App{
		Name:            "cocoon-proxy",
		Usage:           "multiplex a cocoon sandbox's agent channel",
		HideHelpCommand: true,
		Commands:        []*cli.Command{forwardCommand},
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "agent-socket", Usage: "`PATH` of the unix socket QEMU serves for the agent's serial port"},
			&cli.StringFlag{Name: "listen", Usage: "`PATH` of the unix socket to serve (created 0600, removed on exit)"},
			&cli.DurationFlag{Name: "connect-timeout", Value: 30 * time.Second, Usage: "how long to retry connecting to the agent socket"},
		}, daemonFlags...),
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return err
		},
		Action: func(c *cli.Context) error {
			return runLogged(c, func(log *logrus.Entry) error {
				return run(c.Context, config{
					agentSocket:    c.String("agent-socket"),
					listen:         c.String("listen"),
					connectTimeout: c.Duration("connect-timeout"),
					pidFile:        c.String("pid-file"),
				}, log)
			})
		},
	}
}

// daemonFlags are the flags of the proxy and of the forwarder about their
// logs and pid file.
var daemonFlags = []cli.Flag{
	&cli.StringFlag{Name: "log", Usage: "append logs to `FILE` instead of stderr"},
	&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
	&cli.BoolFlag{Name: "debug", Usage: "log debug messages"},
	&cli.StringFlag{Name: "pid-file", Usage: "write the process's PID to `FILE` once it serves"},
}

// runLogged checks that c has no arguments, opens the log that daemonFlags
// name and calls fn with it; fn's error is logged there too.
func runLogged(c *cli.Context, fn func(*logrus.Entry) error) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", c.Args().Slice())
	}
	log, closeLog, err := openLog(c.String("log"), c.String("log-format"), c.Bool("debug"))
	if err != nil {
		return err
	}
	defer closeLog()
	if err := fn(log); err != nil {
		if c.String("log") != "" { // else main prints it on stderr
			log.WithError(err).Error("exiting")
		}
		return err
	}
	return nil
}

// openLog returns the proxy's logger and a function that closes its file.
func openLog(path, format string, debug bool) (*logrus.Entry, func(), error) {
	l := logrus.New()
	switch format {
	case "text":
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, nil, fmt.Errorf("invalid --log-format %q: want text or json", format)
	}
	if debug {
		l.SetLevel(logrus.DebugLevel)
	}
	closeLog := func() {}
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("opening log: %w", err)
		}
		l.SetOutput(f)
		closeLog = func() { f.Close() }
	}
	return logrus.NewEntry(l).WithField("pid", os.Getpid()), closeLog, nil
}

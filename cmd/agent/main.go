// Command cocoon-agent is the init process (PID 1) of every cocoon guest: it
// sets up the guest, reaps orphans, serves the agent API to the host and
// runs the containers with runc's libcontainer.
//
// It is also its own "runc init": libcontainer starts every container
// process by re-executing the agent with the argument "init" (main handles
// that before anything else). Build it static, with seccomp:
//
//	CGO_ENABLED=1 go build -trimpath -tags 'seccomp osusergo netgo' \
//	  -ldflags '-s -w -extldflags -static -X github.com/cocoon-containers/cocoon/agent.Version=...' \
//	  -o bin/cocoon-agent ./cmd/agent
package main

import (
	"context"
	"os"
	"os/signal"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runc init's namespace setup, in C, before Go starts
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agent"
	"github.com/cocoon-containers/cocoon/agent/container"
	"github.com/cocoon-containers/cocoon/agent/reaper"
)

// portWaitTimeout bounds the wait for the agent's port to appear: the kernel
// adds it within milliseconds of boot, even under TCG.
const portWaitTimeout = 30 * time.Second

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// "runc init": the Go side of a container process's setup, after
		// nsenter's C code has joined or created its namespaces. It
		// ends in exec of the container's program, or exits.
		libcontainer.Init()
	}

	pid1 := os.Getpid() == 1
	if pid1 {
		_ = agent.SetupStdio() // best effort: /dev is not mounted yet.
	}
	logger := logrus.New()
	logger.SetOutput(os.Stderr) // the console
	logger.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000", DisableColors: true})
	log := logrus.NewEntry(logger).WithField("pid", os.Getpid())

	code := run(logger, log, pid1)
	if pid1 {
		// init must not exit: the kernel would panic, and hang unless told
		// panic=N. Power off, so that QEMU exits and the host sees why in
		// the console log.
		log.Error("cocoon-agent stopped; powering off")
		agent.PowerOff(log)
	}
	os.Exit(code)
}

func run(logger *logrus.Logger, log *logrus.Entry, pid1 bool) int {
	ctx := context.Background()
	if pid1 {
		if err := agent.SetupGuest(log); err != nil {
			log.WithError(err).Error("setting up the guest")
		}
	} else {
		// Outside a guest (development): no mounts, and stop on SIGTERM or
		// SIGINT. As PID 1 the agent ignores them: the host destroys a
		// sandbox through DestroySandbox.
		log.Warn("not PID 1: skipping the guest setup")
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			log.WithError(err).Warn("becoming a child subreaper")
		}
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, unix.SIGTERM, unix.SIGINT)
		defer stop()
	}
	params, err := agent.ReadKernelParams("/proc/cmdline")
	if err != nil {
		log.WithError(err).Warn("no kernel parameters")
	}
	if s, ok := params.LogLevel(); ok {
		if lvl, err := logrus.ParseLevel(s); err == nil {
			logger.SetLevel(lvl)
		} else {
			log.WithError(err).Warn("bad log level")
		}
	}
	// libcontainer logs through logrus's standard logger, and forwards
	// runc init's messages to it: send them where the agent's go.
	std := logrus.StandardLogger()
	std.SetOutput(logger.Out)
	std.SetFormatter(logger.Formatter)
	std.SetLevel(logger.GetLevel())
	log.WithField("version", agent.Version).Info("cocoon-agent starting")

	rp := reaper.New(log)
	go rp.Run(ctx)

	pivot, err := agent.PivotRootWorks()
	if err != nil {
		log.WithError(err).Warn("checking for pivot_root")
	}
	if !pivot {
		log.Warn("the root is the initramfs: containers use MS_MOVE and chroot instead of pivot_root")
	}
	containers, err := container.NewManager(container.Config{
		NoPivotRoot: !pivot,
		Reaper:      rp,
		Log:         log.WithField("component", "containers"),
	})
	if err != nil {
		log.WithError(err).Error("starting the container manager")
		return 1
	}

	transport, err := agent.TransportFromParams(params, log)
	if err != nil {
		log.WithError(err).Error("choosing the transport")
		return 1
	}
	listenCtx, cancel := context.WithTimeout(ctx, portWaitTimeout)
	l, err := transport.Listen(listenCtx)
	cancel()
	if err != nil {
		log.WithError(err).Error("listening for the host")
		return 1
	}

	svc := agent.NewService(agent.ServiceConfig{
		Containers: containers,
		PowerOff:   func() { agent.PowerOff(log) },
		Sync:       unix.Sync,
		Log:        log,
	})
	srv, err := agent.NewServer(agent.ServerConfig{Service: svc, Stdio: svc.Stdio, PortForward: svc.PortForward, Log: log})
	if err != nil {
		log.WithError(err).Error("creating the server")
		return 1
	}
	log.Info("serving")
	if err := srv.Serve(ctx, l); err != nil {
		log.WithError(err).Error("serving")
		return 1
	}
	return 0
}

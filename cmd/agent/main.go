// Command cocoon-agent is the init process (PID 1) of every cocoon guest: it
// sets up the guest, reaps orphans and serves the agent API to the host.
//
// Build it static:
//
//	CGO_ENABLED=0 go build -trimpath \
//	  -ldflags '-s -w -X github.com/cocoon-containers/cocoon/agent.Version=...' \
//	  -o bin/cocoon-agent ./cmd/agent
package main

import (
	"context"
	"os"
	"os/signal"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agent"
	"github.com/cocoon-containers/cocoon/api"
)

// portWaitTimeout bounds the wait for the agent's port to appear: the kernel
// adds it within milliseconds of boot, even under TCG.
const portWaitTimeout = 30 * time.Second

func main() {
	// Re-exec hooks (runc's libcontainer "init") go here, before anything
	// else runs: they must not see the agent's setup.

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
	if s, ok := params.Get(api.KernelParamLogLevel); ok {
		if lvl, err := logrus.ParseLevel(s); err == nil {
			logger.SetLevel(lvl)
		} else {
			log.WithError(err).Warn("bad log level")
		}
	}
	log.WithField("version", agent.Version).Info("cocoon-agent starting")

	reaper := agent.NewReaper(log)
	go reaper.Run(ctx)

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
		PowerOff: func() { agent.PowerOff(log) },
		Log:      log,
	})
	srv, err := agent.NewServer(agent.ServerConfig{Service: svc, Log: log})
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

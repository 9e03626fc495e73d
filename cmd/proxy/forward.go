package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/network"
	"github.com/cocoon-containers/cocoon/portforward"
)

// forwardCommand serves CRI port forwarding for one sandbox (see package
// portforward): one per sandbox whose pod has a network namespace, started
// once the agent runs, until the VM goes away or SIGTERM.
var forwardCommand = &cli.Command{
	Name:  "forward",
	Usage: "forward TCP connections made to the loopback of a pod's network namespace to the same ports in the guest (CRI port-forward)",
	Flags: append([]cli.Flag{
		&cli.StringFlag{Name: "netns", Usage: "`PATH` of the pod's network namespace"},
		&cli.StringFlag{Name: "proxy-socket", Usage: "`PATH` of the sandbox's cocoon-proxy socket"},
		&cli.UintFlag{Name: "vsock-cid", Usage: "the guest's vsock context `ID`, instead of --proxy-socket"},
		&cli.DurationFlag{Name: "connect-timeout", Value: 30 * time.Second, Usage: "how long to wait for the agent"},
	}, daemonFlags...),
	Action: func(c *cli.Context) error {
		return runLogged(c, func(log *logrus.Entry) error {
			return runForward(c.Context, forwardConfig{
				netns:          c.String("netns"),
				proxySocket:    c.String("proxy-socket"),
				vsockCID:       uint32(c.Uint("vsock-cid")),
				connectTimeout: c.Duration("connect-timeout"),
				pidFile:        c.String("pid-file"),
			}, log)
		})
	},
}

// forwardConfig is what the command line gives runForward.
type forwardConfig struct {
	netns          string
	proxySocket    string
	vsockCID       uint32
	connectTimeout time.Duration
	pidFile        string
}

// dialer is the way to the agent that cfg names.
func (cfg forwardConfig) dialer() (agentclient.Dialer, error) {
	switch {
	case cfg.proxySocket != "" && cfg.vsockCID != 0:
		return nil, errors.New("--proxy-socket and --vsock-cid exclude each other")
	case cfg.proxySocket != "":
		return agentclient.ProxyDialer{Path: cfg.proxySocket}, nil
	case cfg.vsockCID != 0:
		return agentclient.VsockDialer{CID: cfg.vsockCID}, nil
	}
	return nil, errors.New("--proxy-socket or --vsock-cid is required")
}

// runForward redirects the loopback of cfg.netns to its listeners and
// forwards what they accept to the guest until the agent's channel closes
// or ctx is cancelled (both return nil); it removes the redirect on the way
// out.
func runForward(ctx context.Context, cfg forwardConfig, log *logrus.Entry) error {
	if cfg.netns == "" {
		return errors.New("--netns is required")
	}
	d, err := cfg.dialer()
	if err != nil {
		return err
	}
	if cfg.connectTimeout <= 0 {
		return fmt.Errorf("invalid --connect-timeout %v: must be positive", cfg.connectTimeout)
	}
	log = log.WithField("netns", cfg.netns)

	// An idle stream to the agent ends when the VM goes away, and the
	// forwarder with it.
	octx, cancel := context.WithTimeout(ctx, cfg.connectTimeout)
	watch, err := agentclient.OpenWatch(octx, d)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("reaching the agent: %w", err)
	}
	defer watch.Close()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, watch)
		log.Info("agent channel closed")
		stop()
	}()

	v4, v6, err := network.ListenLoopback(cfg.netns)
	if err != nil {
		return err
	}
	ls := []*net.TCPListener{v4}
	p4, p6 := listenerPort(v4), uint16(0)
	if v6 != nil {
		ls, p6 = append(ls, v6), listenerPort(v6)
	}
	defer func() {
		if err := network.RemoveRedirect(cfg.netns); err != nil {
			log.WithError(err).Warn("removing the redirect")
		}
	}()
	if err := network.RedirectLoopback(cfg.netns, p4, p6); err != nil {
		for _, l := range ls {
			l.Close()
		}
		return err
	}
	if cfg.pidFile != "" {
		if err := writePIDFile(cfg.pidFile); err != nil {
			for _, l := range ls {
				l.Close()
			}
			return err
		}
		defer os.Remove(cfg.pidFile)
	}
	log.WithFields(logrus.Fields{"v4": p4, "v6": p6}).Info("forwarding")
	srv := &portforward.Server{Dialer: d, ConnectTimeout: cfg.connectTimeout, Log: log}
	if err := srv.Serve(ctx, ls...); err != nil {
		return fmt.Errorf("forwarding: %w", err)
	}
	log.Info("exiting")
	return nil
}

func listenerPort(l *net.TCPListener) uint16 {
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

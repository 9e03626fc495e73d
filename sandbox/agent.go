package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
)

// AgentAddress returns where another host process (a cocoon-relay) reaches
// the agent: the proxy's socket under the serial transport, or the guest's
// vsock CID; the other is empty or zero.
func (s *Sandbox) AgentAddress() (socket string, vsockCID uint32) {
	if s.state.Transport == api.TransportVsock {
		return "", s.state.VsockCID
	}
	return filepath.Join(s.dir, proxySocket), 0
}

// Agent opens a new connection to the sandbox's agent; the caller closes
// it.
func (s *Sandbox) Agent(ctx context.Context) (*agentclient.Client, error) {
	c, err := agentclient.Connect(ctx, s.dialer(), s.clientOptions())
	if err == nil {
		s.m.Log.WithField("sandbox", s.state.ID).Debug("connected to the agent (private connection)")
	}
	return c, err
}

// Client returns the sandbox's shared connection to its agent, made on
// first use and made again once lost. Callers must not close it: Close and
// Destroy do. Container operations that need no host work (start, exec,
// signal, wait, stdio, resize, ps, stats, pause, resume, update) go
// straight through it.
func (s *Sandbox) Client(ctx context.Context) (*agentclient.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent != nil {
		select {
		case <-s.agent.Done():
			s.agent.Close()
			s.agent = nil
		default:
			return s.agent, nil
		}
	}
	c, err := agentclient.Connect(ctx, s.dialer(), s.clientOptions())
	if err != nil {
		return nil, fmt.Errorf("connecting to the agent of sandbox %s: %w", s.state.ID, err)
	}
	s.m.Log.WithField("sandbox", s.state.ID).Debug("connected to the agent")
	s.agent = c
	return c, nil
}

// connected makes c, a new connection to the agent, the shared one.
func (s *Sandbox) connected(c *agentclient.Client) {
	s.m.Log.WithField("sandbox", s.state.ID).Debug("connected to the agent")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent != nil {
		s.agent.Close()
	}
	s.agent = c
}

// AgentInfo is what the agent reports about itself and its guest.
type AgentInfo struct {
	// Version is the agent's build version, APIVersion its protocol's.
	Version    string
	APIVersion uint32
	// KernelRelease is the guest kernel's.
	KernelRelease string
	// Uptime is the guest's.
	Uptime time.Duration
}

// AgentInfo asks the agent for its version and the guest's.
func (s *Sandbox) AgentInfo(ctx context.Context) (AgentInfo, error) {
	c, err := s.Client(ctx)
	if err != nil {
		return AgentInfo{}, err
	}
	v, err := c.Version(ctx, &api.VersionRequest{})
	if err != nil {
		return AgentInfo{}, fmt.Errorf("asking the agent of sandbox %s for its version: %w", s.state.ID, err)
	}
	return AgentInfo{
		Version: v.GetAgentVersion(), APIVersion: uint32(v.GetApiVersion()), KernelRelease: v.GetKernelRelease(),
		Uptime: time.Duration(v.GetUptimeSeconds() * float64(time.Second)),
	}, nil
}

// Close releases the sandbox's connection to its agent; the sandbox keeps
// running.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent == nil {
		return nil
	}
	err := s.agent.Close()
	s.agent = nil
	return err
}

package sandbox

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
)

// ShimAddress returns where another host process (a cocoon-shim) reaches
// the agent: the proxy's socket under the serial transport, or the guest's
// vsock CID; the other is empty or zero.
func (s *Sandbox) ShimAddress() (socket string, vsockCID uint32) {
	if s.state.Transport == api.TransportVsock {
		return "", s.state.VsockCID
	}
	return filepath.Join(s.dir, proxySocket), 0
}

// Agent opens a new connection to the sandbox's agent; the caller closes
// it.
func (s *Sandbox) Agent(ctx context.Context) (*agentclient.Client, error) {
	return agentclient.Connect(ctx, s.dialer(), s.clientOptions())
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
	s.agent = c
	return c, nil
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

package agent

import (
	"context"
	"net"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/agent/container"
	"github.com/cocoon-containers/cocoon/api"
)

// Stdio is the server's StdioHandler: it hands a stdio stream the host
// opened to the process its header names. A stream for an unknown process,
// or one the process was not created with, is logged and closed.
func (s *Service) Stdio(ctx context.Context, h api.StreamHeader, conn net.Conn) {
	log := s.cfg.Log.WithFields(logrus.Fields{"container": h.ContainerID, "exec": h.ExecID, "stdio": h.Stdio})
	m := s.cfg.Containers
	if m == nil {
		log.Warn("refusing stdio stream: this agent runs no containers")
		conn.Close()
		return
	}
	p, err := m.Process(h.ContainerID, h.ExecID)
	if err != nil {
		log.WithError(err).Warn("refusing stdio stream")
		conn.Close()
		return
	}
	var stream container.Stream
	switch h.Stdio {
	case api.Stdin:
		stream = container.Stdin
	case api.Stdout:
		stream = container.Stdout
	case api.Stderr:
		stream = container.Stderr
	case api.Terminal:
		stream = container.Terminal
	}
	if err := p.Attach(stream, conn); err != nil {
		log.WithError(err).Warn("refusing stdio stream")
		return
	}
	log.Debug("stdio stream attached")
}

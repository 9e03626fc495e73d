package agent

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/api"
)

// Transport is how the host reaches the agent. Listen returns a listener
// whose Accept yields one connection per stream the host opens; each starts
// with an api.StreamHeader, which the Server reads. Closing the listener
// releases the transport.
//
// Two implementations: SerialTransport (a virtio-serial port multiplexed
// with yamux, works everywhere) and VsockTransport (AF_VSOCK, one connection
// per stream, where the host has vhost-vsock).
type Transport interface {
	Listen(ctx context.Context) (net.Listener, error)
}

// TransportFromParams picks the transport the kernel command line asks for:
// api.KernelParamTransport ("serial", the default, or "vsock") and, for
// vsock, api.KernelParamVsockPort (default api.DefaultVsockPort).
func TransportFromParams(params KernelParams, log *logrus.Entry) (Transport, error) {
	kind, _ := params.Get(api.KernelParamTransport)
	switch kind {
	case "", api.TransportSerial:
		return &SerialTransport{
			SysRoot:  "/sys",
			DevRoot:  "/dev",
			PortName: api.AgentPortName,
			Log:      log,
		}, nil
	case api.TransportVsock:
		port := uint32(api.DefaultVsockPort)
		if s, ok := params.Get(api.KernelParamVsockPort); ok {
			p, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parsing %s=%q: %w", api.KernelParamVsockPort, s, err)
			}
			port = uint32(p)
		}
		return &VsockTransport{Port: port}, nil
	}
	return nil, fmt.Errorf("choosing transport: unknown %s=%q", api.KernelParamTransport, kind)
}

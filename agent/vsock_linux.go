package agent

import (
	"context"
	"fmt"
	"net"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// VsockTransport listens on an AF_VSOCK port: every connection the host makes
// is one stream. No multiplexing is needed, and data bypasses QEMU where the
// host has vhost-vsock.
type VsockTransport struct {
	// Port is the vsock port to listen on, normally api.DefaultVsockPort.
	Port uint32
}

// Listen listens on the port for connections from any context ID (the host's
// is 2; accepting any avoids needing /dev/vsock to learn the guest's own).
func (t *VsockTransport) Listen(ctx context.Context) (net.Listener, error) {
	l, err := vsock.ListenContextID(unix.VMADDR_CID_ANY, t.Port, nil)
	if err != nil {
		return nil, fmt.Errorf("listening on vsock port %d: %w", t.Port, err)
	}
	return l, nil
}

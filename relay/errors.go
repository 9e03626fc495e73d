package relay

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/containerd/ttrpc"
)

// isConnectionLoss tells whether err says that the agent cannot be reached
// any more: the agent client's ErrUnavailable, or a transport error from a
// stream (the proxy closed it, vsock reset it, nothing listens).
func isConnectionLoss(err error) bool {
	for _, target := range []error{
		agentclient.ErrUnavailable,
		ttrpc.ErrClosed,
		io.EOF,
		io.ErrUnexpectedEOF,
		io.ErrClosedPipe,
		net.ErrClosed,
		syscall.ECONNRESET,
		syscall.ECONNREFUSED,
		syscall.ENOENT, // no proxy socket
		syscall.EPIPE,
		syscall.ENOTCONN,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

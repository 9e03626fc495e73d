package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
)

// DefaultConnectTimeout bounds Connect at hardware speed (multiplied by
// Options.Scale): the sandbox is up when a relay starts, so a relay that
// cannot reach its agent quickly will not.
const DefaultConnectTimeout = 2 * time.Second

// NewDialer returns the dialer of the agent that the relay's flags name:
// exactly one of a cocoon-proxy socket (proxySocket) or a vsock address
// (vsock, "CID:PORT", or "CID" for api.DefaultVsockPort).
func NewDialer(proxySocket, vsock string) (agentclient.Dialer, error) {
	switch {
	case proxySocket != "" && vsock != "":
		return nil, errors.New("both a proxy socket and a vsock address given")
	case proxySocket != "":
		return agentclient.ProxyDialer{Path: proxySocket}, nil
	case vsock != "":
		cidStr, portStr, hasPort := strings.Cut(vsock, ":")
		cid, err := strconv.ParseUint(cidStr, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parsing vsock address %q: bad CID: %w", vsock, err)
		}
		port := uint64(api.DefaultVsockPort)
		if hasPort {
			if port, err = strconv.ParseUint(portStr, 10, 32); err != nil {
				return nil, fmt.Errorf("parsing vsock address %q: bad port: %w", vsock, err)
			}
		}
		return agentclient.VsockDialer{CID: uint32(cid), Port: uint32(port)}, nil
	}
	return nil, errors.New("no agent address: give a proxy socket or a vsock address")
}

// Connect connects to the agent and checks that it answers, within
// DefaultConnectTimeout (scaled by opts.Scale): a relay whose sandbox is
// gone or unreachable fails fast.
func Connect(ctx context.Context, d agentclient.Dialer, opts agentclient.Options) (*agentclient.Client, error) {
	timeout := DefaultConnectTimeout
	if opts.Scale > 0 {
		timeout *= opts.Scale
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := agentclient.Connect(ctx, d, opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to the agent: %w", err)
	}
	if _, err := c.Check(ctx, &api.CheckRequest{}); err != nil {
		c.Close()
		return nil, fmt.Errorf("connecting to the agent: %w", err)
	}
	return c, nil
}

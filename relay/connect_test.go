package relay_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/relay"
)

func TestNewDialer(t *testing.T) {
	for _, tc := range []struct {
		name, proxy, vsock string
		want               agentclient.Dialer
		err                string
	}{
		{"proxy", "/run/x/proxy.sock", "", agentclient.ProxyDialer{Path: "/run/x/proxy.sock"}, ""},
		{"vsock", "", "3:1025", agentclient.VsockDialer{CID: 3, Port: 1025}, ""},
		{"vsock default port", "", "42", agentclient.VsockDialer{CID: 42, Port: api.DefaultVsockPort}, ""},
		{"both", "/p", "3:1", nil, "both"},
		{"neither", "", "", nil, "no agent address"},
		{"bad cid", "", "x:1", nil, "bad CID"},
		{"bad port", "", "3:", nil, "bad port"},
		{"huge cid", "", "4294967296:1", nil, "bad CID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := relay.NewDialer(tc.proxy, tc.vsock)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("NewDialer: %v, %v; want an error with %q", d, err, tc.err)
				}
				return
			}
			if err != nil || d != tc.want {
				t.Fatalf("NewDialer: %#v, %v; want %#v", d, err, tc.want)
			}
		})
	}
}

func TestConnectFailsFast(t *testing.T) {
	begin := time.Now()
	_, err := relay.Connect(context.Background(), agentclient.ProxyDialer{Path: filepath.Join(t.TempDir(), "none.sock")}, agentclient.Options{Scale: 10})
	if err == nil || !strings.HasPrefix(err.Error(), "connecting to the agent: ") {
		t.Fatalf("Connect: %v", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Connect took %v", d)
	}
}

package network

import (
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/network/networktest"
)

// dialIn connects to addr from inside the namespace at path.
func dialIn(t *testing.T, path, network, addr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := Do(path, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 5*time.Second)
		return err
	})
	return c, err
}

func nftTables(t *testing.T, netns string) string {
	t.Helper()
	args := []string{"list", "tables"}
	if netns != "" {
		args = append([]string{"netns", "exec", netns, "nft"}, args...)
	}
	cmd := "ip"
	if netns == "" {
		cmd = "nft"
	}
	out, err := exec.Command(cmd, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("listing nftables tables: %v: %s", err, out)
	}
	return string(out)
}

func TestRedirectLoopback(t *testing.T) {
	ns := networktest.LoopbackNamespace(t)
	v4, v6, err := ListenLoopback(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer v4.Close()
	if v6 == nil {
		t.Fatal("no ::1 listener in a namespace with IPv6")
	}
	defer v6.Close()
	port := func(l *net.TCPListener) uint16 { return uint16(l.Addr().(*net.TCPAddr).Port) }
	if err := RedirectLoopback(ns, port(v4), port(v6)); err != nil {
		t.Fatal(err)
	}
	// Twice: it replaces what it installed.
	if err := RedirectLoopback(ns, port(v4), port(v6)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(nftTables(t, ""), forwardTable) {
		t.Error("the redirect is in the host's own namespace")
	}

	for name, tc := range map[string]struct {
		l       *net.TCPListener
		network string
		addr    string
		want    uint16
	}{
		"v4": {v4, "tcp4", "127.0.0.1:8080", 8080},
		"v6": {v6, "tcp6", "[::1]:9090", 9090},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := dialIn(t, ns, tc.network, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = tc.l.SetDeadline(time.Now().Add(5 * time.Second))
			a, err := tc.l.AcceptTCP()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			got, err := OriginalPort(a)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("OriginalPort = %d, want %d", got, tc.want)
			}
		})
	}

	if err := RemoveRedirect(ns); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(nftTables(t, filepath.Base(ns)), forwardTable) {
		t.Error("RemoveRedirect left the table")
	}
	if c, err := dialIn(t, ns, "tcp4", "127.0.0.1:8080"); !errors.Is(err, unix.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial after RemoveRedirect: %v, want connection refused", err)
	}
	if err := RemoveRedirect(ns); err != nil {
		t.Errorf("RemoveRedirect again: %v", err)
	}
	if err := RemoveRedirect(filepath.Join(t.TempDir(), "gone")); err != nil {
		t.Errorf("RemoveRedirect of a missing namespace: %v", err)
	}
}

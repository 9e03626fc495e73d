//go:build integration

package cri_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// syncBuffer is a buffer that a command writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// portForward runs `crictl port-forward POD LOCAL:remote` on a free local
// port until the test ends, and returns the local address and crictl's
// stderr so far.
func portForward(t *testing.T, pod string, remote int) (addr string, stderr func() string) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd, err := daemon.CrictlCommand(ctx, crictlPath, "port-forward", pod, fmt.Sprintf("%d:%d", local, remote))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	testutil.StartUntilCleanup(t, cmd, cancel)
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), "Forwarding from") {
		if time.Now().After(deadline) {
			t.Fatalf("crictl port-forward %s %d:%d did not start: stdout %q, stderr %q", pod, local, remote, out.String(), errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("127.0.0.1:%d", local), errb.String
}

// getOnce makes one HTTP request to url.
func getOnce(url string) (string, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body)), err
}

// TestPortForward checks CRI port forwarding (kubectl port-forward) into a
// cocoon pod: containerd dials localhost:PORT in the pod's network
// namespace on the host, which cocoon's forwarder carries into the guest;
// a runc pod beside it does the same natively.
func TestPortForward(t *testing.T) {
	dir := t.TempDir()
	pods := map[string]string{}
	pods["cocoon"], _ = startNetworkPod(t, dir, "cocoon", "pf-cocoon", httpdCommand("hello-from-cocoon")...)
	pods["runc"], _ = startNetworkPod(t, dir, "runc", "pf-runc", httpdCommand("hello-from-runc")...)
	netns := inspectPod(t, pods["cocoon"]).NetNS

	if p := containerdtest.Processes("forward --netns " + netns); len(p) != 1 {
		t.Errorf("port forwarders of the cocoon pod: %v, want one", p)
	}
	if out, err := exec.Command("nsenter", "--net="+netns, "nft", "list", "table", "inet", "cocoon_portforward").CombinedOutput(); err != nil {
		t.Errorf("the redirect in the pod's namespace: %v: %s", err, out)
	}
	if out, _ := exec.Command("nft", "list", "tables").CombinedOutput(); strings.Contains(string(out), "cocoon") {
		t.Errorf("cocoon's table in the host's namespace:\n%s", out)
	}

	for _, handler := range []string{"cocoon", "runc"} {
		t.Run(handler, func(t *testing.T) {
			addr, _ := portForward(t, pods[handler], 8080)
			want := "hello-from-" + handler
			if got := httpGet(t, "http://"+addr+"/"); got != want {
				t.Errorf("GET through port-forward: %q, want %q", got, want)
			}
			// A second connection through the same forward.
			if got, err := getOnce("http://" + addr + "/"); err != nil || got != want {
				t.Errorf("second GET through port-forward: %q, %v; want %q", got, err, want)
			}

			// Nothing listens on port 9 in the pod: the connection
			// fails and crictl reports an error, as with runc.
			addr, stderr := portForward(t, pods[handler], 9)
			if got, err := getOnce("http://" + addr + "/"); err == nil {
				t.Errorf("GET through a forward to a closed port answered %q", got)
			}
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(stderr(), "error") && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("%s: crictl's error for a closed port: %s", handler, strings.TrimSpace(stderr()))
			if !strings.Contains(stderr(), "error") {
				t.Errorf("crictl reported no error for a closed port: %q", stderr())
			}
		})
	}

	for _, p := range pods {
		mustCrictl(t, "stopp", p)
		mustCrictl(t, "rmp", p)
	}
	if p := containerdtest.Processes("cocoon-proxy forward"); len(p) != 0 {
		t.Errorf("port forwarders left after rmp: %v", p)
	}
	if q := qemus(t); len(q) != 0 {
		t.Errorf("QEMU left after rmp: %v", q)
	}
}

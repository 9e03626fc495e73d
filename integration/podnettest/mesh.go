package podnettest

import (
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// The mesh's numbers, as Istio has them where it has them.
const (
	// OutboundPort is where outbound TCP is redirected (Envoy's 15001).
	OutboundPort = 15001
	// InboundPort is where TPROXY delivers inbound TCP (Envoy's 15006).
	InboundPort = 15006
	// ServicePort is the pod's one captured inbound port: nothing in the
	// pod listens there, so only the proxy can answer on it.
	ServicePort = 9080
	// DirectPort is an application server in the pod (DirectServer):
	// only the proxy's user reaches it, everyone else reaches the proxy.
	DirectPort = 8080
	// ProxyUID is the proxy's user and group, exempted from the redirect.
	ProxyUID = testutil.MeshProxyUID
	// Mark is the TPROXY mark (0x539), routed by RouteTable to the host.
	Mark = 1337
	// RouteTable routes marked packets to the local host.
	RouteTable = 133
	// OutsideAddr is an address outside the pod (TEST-NET-3, where
	// nothing answers): a connection to it only succeeds by the redirect.
	OutsideAddr = "203.0.113.80"
)

// Backends are the iptables back ends: iptables-legacy (ip_tables) and
// iptables-nft (nf_tables with its xtables compat layer).
var Backends = []string{"legacy", "nft"}

// ProxyCommand runs meshproxy: it must start as root with CAP_NET_ADMIN
// (its TPROXY sockets are transparent), and runs as ProxyUID once it
// listens.
func ProxyCommand() []string {
	return []string{ProxyPath, "-outbound", fmt.Sprint(OutboundPort), "-inbound", fmt.Sprint(InboundPort), "-uid", fmt.Sprint(ProxyUID)}
}

// DirectServer is a shell command that serves "direct" with busybox httpd
// on DirectPort, in the background.
const DirectServer = "mkdir -p /www && echo direct > /www/index.html && httpd -p 8080 -h /www"

// Reply is what meshproxy answers on port for a connection whose original
// destination was orig (host:port, IPv6 in brackets).
func Reply(port int, orig string) string {
	return fmt.Sprintf("meshproxy port=%d orig=%s ", port, orig)
}

// rules is the mesh's rule set for one family, in iptables syntax with
// {ipt} for the command: Istio's, trimmed to one captured inbound port.
// Every match and target a mesh's init container uses is there: owner,
// mark, connmark, multiport, comment, addrtype, conntrack, socket,
// REDIRECT, TPROXY, MARK, CONNMARK, CT in the raw table.
const rules = `
{ipt} -t nat -N MESH_REDIRECT
{ipt} -t nat -A MESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001
{ipt} -t nat -N MESH_OUTPUT
{ipt} -t nat -A OUTPUT -p tcp -j MESH_OUTPUT
{ipt} -t nat -A MESH_OUTPUT -m owner --uid-owner 1337 -m comment --comment "the proxy itself" -j RETURN
{ipt} -t nat -A MESH_OUTPUT -m owner --gid-owner 1337 -j RETURN
{ipt} -t nat -A MESH_OUTPUT -m connmark --mark 0x539 -j RETURN
{ipt} -t nat -A MESH_OUTPUT -p tcp -m addrtype --dst-type LOCAL -m multiport --dports 15001,15006,15020 -j RETURN
{ipt} -t nat -A MESH_OUTPUT -d {lo} -j RETURN
{ipt} -t nat -A MESH_OUTPUT -j MESH_REDIRECT
{ipt} -t mangle -N MESH_DIVERT
{ipt} -t mangle -A MESH_DIVERT -j MARK --set-xmark 0x539/0xffffffff
{ipt} -t mangle -A MESH_DIVERT -j ACCEPT
{ipt} -t mangle -N MESH_TPROXY
{ipt} -t mangle -A MESH_TPROXY ! -d {lo} -p tcp -j TPROXY --on-port 15006 --on-ip {any} --tproxy-mark 0x539/0xffffffff
{ipt} -t mangle -N MESH_INBOUND
{ipt} -t mangle -A PREROUTING -p tcp -j MESH_INBOUND
{ipt} -t mangle -A PREROUTING -p tcp -m mark --mark 0x539 -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff
{ipt} -t mangle -A MESH_INBOUND -p tcp --dport 9080 -m conntrack --ctstate RELATED,ESTABLISHED -j MESH_DIVERT
{ipt} -t mangle -A MESH_INBOUND -p tcp --dport 9080 -m socket --transparent -j MESH_DIVERT
{ipt} -t mangle -A MESH_INBOUND -p tcp --dport 9080 -j MESH_TPROXY
{ipt} -t raw -A OUTPUT -p udp --dport 53 -m owner --uid-owner 1337 -j CT --zone 1
`

// InitScript is the init container's shell script (busybox sh) for
// backend ("legacy" or "nft"): the rule set for IPv4 and IPv6, the policy
// routing of TPROXY (marked packets go to the local host), then what
// iptables-save says of both families and, with nft, what nft says.
func InitScript(backend string) string {
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, f := range []struct{ ipt, lo, any string }{
		{"/usr/sbin/iptables-" + backend, "127.0.0.1/32", "0.0.0.0"},
		{"/usr/sbin/ip6tables-" + backend, "::1/128", "::"},
	} {
		b.WriteString(strings.NewReplacer("{ipt}", f.ipt, "{lo}", f.lo, "{any}", f.any).Replace(rules))
	}
	fmt.Fprintf(&b, `/usr/sbin/ip rule add fwmark %[1]d lookup %[2]d
/usr/sbin/ip route add local 0.0.0.0/0 dev lo table %[2]d
/usr/sbin/ip -6 rule add fwmark %[1]d lookup %[2]d
/usr/sbin/ip -6 route add local ::/0 dev lo table %[2]d
/usr/sbin/iptables-%[3]s-save
/usr/sbin/ip6tables-%[3]s-save
`, Mark, RouteTable, backend)
	if backend == "nft" {
		b.WriteString("/usr/sbin/nft list ruleset\n")
	}
	b.WriteString("echo " + RulesInstalled + "\n")
	return b.String()
}

// RulesInstalled is InitScript's last line. (Under TCG the script takes
// about 15 s: each iptables command is a fraction of a second.)
const RulesInstalled = "mesh rules installed"

// ProxyListening is in meshproxy's first line once it listens.
const ProxyListening = "as uid 1337"

// Fetch is a command that fetches url with busybox wget, for at most 10
// s (busybox's own -T crashes; a connection the rules miss would hang for
// minutes).
func Fetch(url string) []string {
	return []string{"timeout", "10", "wget", "-q", "-O", "-", url}
}

// InstalledRules are lines the init script's output must hold for
// backend: what each iptables-save prints of a few of the rules (twice:
// IPv4 and IPv6), and with nft the native translation of the redirect.
func InstalledRules(backend string) []string {
	want := []string{
		"-A MESH_OUTPUT -m owner --uid-owner 1337 -m comment --comment \"the proxy itself\" -j RETURN",
		"-A MESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
		"-A MESH_INBOUND -p tcp -m tcp --dport 9080 -m socket --transparent -j MESH_DIVERT",
		"-A MESH_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x539/0xffffffff",
		"-A MESH_TPROXY ! -d ::1/128 -p tcp -j TPROXY --on-port 15006 --on-ip :: --tproxy-mark 0x539/0xffffffff",
		"-A OUTPUT -p udp -m udp --dport 53 -m owner --uid-owner 1337 -j CT --zone 1",
		RulesInstalled,
	}
	if backend == "nft" {
		want = append(want, "# Warning: table ip nat is managed by iptables-nft, do not touch!", "redirect to :15001")
	}
	return want
}

// Diagnosis is a shell command that prints the state of the rules and
// routes of backend, for a failing test's log.
func Diagnosis(backend string) string {
	return fmt.Sprintf("/usr/sbin/iptables-%[1]s-save -c; /usr/sbin/ip6tables-%[1]s-save -c; /usr/sbin/ip addr; /usr/sbin/ip route; /usr/sbin/ip rule; /usr/sbin/ip -6 route", backend)
}

// Ask connects to addr (from the host), sends an HTTP request and returns
// everything the server sent until it closed the connection.
func Ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

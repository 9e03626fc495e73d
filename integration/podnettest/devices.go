package podnettest

import (
	"fmt"
	"regexp"
	"strings"
)

// DevicesScript is a privileged container's shell script (busybox sh)
// that does what Docker or kind in a pod, a VPN sidecar or a CNI inside a
// pod does to the pod's network namespace, with the distribution's tools:
// bridges (brctl addbr, ip link add type bridge; br_netfilter's sysctl),
// tun and tap devices
// (which open /dev/net/tun), dummy, VLAN, VXLAN, macvlan, ipvlan (on
// another dummy: a link is not the lower device of both),
// WireGuard and veth links, tc (a clsact qdisc with a BPF classifier and
// action, an ingress qdisc with a mirred redirect), nftables rules, an
// ipset matched by both iptables back ends, and an IPVS service. Each
// part prints what the kernel then reports, after a "--- part" line;
// DevicesCheck reads it.
const DevicesScript = `set -e
echo "--- tun"
ls -l /dev/net/tun
/usr/sbin/brctl addbr br-brctl
/usr/sbin/ip link add br-ip type bridge
/usr/sbin/ip tuntap add dev tun0 mode tun
/usr/sbin/ip tuntap add dev tap0 mode tap
/usr/sbin/ip link set tap0 master br-ip
/usr/sbin/ip link add d0 type dummy
/usr/sbin/ip link add link d0 name d0.10 type vlan id 10
/usr/sbin/ip link add vx0 type vxlan id 42 dstport 4789 dev d0
/usr/sbin/ip link add mv0 link d0 type macvlan mode bridge
/usr/sbin/ip link add d1 type dummy
/usr/sbin/ip link add iv0 link d1 type ipvlan mode l2
/usr/sbin/ip link add wg0 type wireguard
/usr/sbin/ip link add ve0 type veth peer name ve1
echo "--- brctl"
/usr/sbin/brctl show
echo "bridge-nf-call-iptables=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)"
echo "--- links"
/usr/sbin/ip -d -o link
/usr/sbin/tc qdisc add dev d0 clsact
/usr/sbin/tc filter add dev d0 ingress bpf bytecode '1,6 0 0 4294967295,' action bpf bytecode '1,6 0 0 0,'
/usr/sbin/tc qdisc add dev ve0 ingress
/usr/sbin/tc filter add dev ve0 parent ffff: matchall action mirred egress redirect dev tap0
echo "--- tc"
/usr/sbin/tc qdisc show dev d0
/usr/sbin/tc filter show dev d0 ingress
/usr/sbin/tc filter show dev ve0 parent ffff:
/usr/sbin/nft add table inet cocoon
/usr/sbin/nft add chain inet cocoon input '{ type filter hook input priority 0; policy accept; }'
/usr/sbin/nft add rule inet cocoon input tcp dport 9999 counter drop
echo "--- nft"
/usr/sbin/nft list ruleset
/usr/sbin/ipset create cocoon hash:ip
/usr/sbin/ipset add cocoon 192.0.2.1
/usr/sbin/iptables-legacy -A INPUT -m set --match-set cocoon src -j DROP
/usr/sbin/iptables-nft -A FORWARD -m set --match-set cocoon src -j DROP
echo "--- ipset"
/usr/sbin/ipset list cocoon
/usr/sbin/iptables-legacy-save -t filter
/usr/sbin/iptables-nft-save -t filter
/usr/sbin/ipvsadm -A -t 10.96.0.10:80 -s rr
/usr/sbin/ipvsadm -a -t 10.96.0.10:80 -r 192.0.2.10:8080 -m
echo "--- ipvs"
/usr/sbin/ipvsadm -Ln
/usr/sbin/brctl delbr br-brctl
/usr/sbin/ip link del br-ip
/usr/sbin/ip tuntap del dev tun0 mode tun
echo "--- deleted"
/usr/sbin/ip -o link
echo "--- done"
`

// devicesLinks are the links DevicesScript makes, with what
// `ip -d -o link` says of each.
var devicesLinks = []struct{ name, want string }{
	{"br-brctl", "bridge forward_delay"},
	{"br-ip", "bridge forward_delay"},
	{"tun0", "tun type tun"},
	{"tap0", "tun type tap"},
	{"tap0", "master br-ip"},
	{"d0", "dummy"},
	{"d0.10", "vlan protocol 802.1Q id 10"},
	{"vx0", "vxlan id 42"},
	{"mv0", "macvlan mode bridge"},
	{"iv0", "ipvlan"},
	{"wg0", "wireguard"},
	{"ve0", "veth"},
}

// devicesOutput is what the other parts of DevicesScript must print.
var devicesOutput = map[string][]string{
	"tun":     {"crw", "10, 200", "/dev/net/tun"},
	"brctl":   {"br-brctl", "bridge-nf-call-iptables=1"},
	"tc":      {"qdisc clsact ffff:", "bpf", "action order 1: bpf", "matchall", "mirred (Egress Redirect to device tap0)"},
	"nft":     {"table inet cocoon", "tcp dport 9999 counter packets 0 bytes 0 drop"},
	"ipset":   {"Name: cocoon", "Type: hash:ip", "192.0.2.1", "-A INPUT -m set --match-set cocoon src -j DROP", "-A FORWARD -m set --match-set cocoon src -j DROP"},
	"ipvs":    {"TCP  10.96.0.10:80 rr", "-> 192.0.2.10:8080"},
	"deleted": {"tap0", "wg0"},
}

// devicesDeleted are links DevicesScript deletes again.
var devicesDeleted = []string{"br-brctl", "br-ip", "tun0"}

// DevicesCheck reports what DevicesScript's output out lacks, or that it
// did not finish; nil if nothing.
func DevicesCheck(out string) []string {
	var problems []string
	parts := map[string]string{}
	part := ""
	for _, line := range strings.SplitAfter(out, "\n") {
		if name, ok := strings.CutPrefix(line, "--- "); ok {
			part = strings.TrimSpace(name)
			parts[part] = ""
			continue
		}
		parts[part] += line
	}
	if _, ok := parts["done"]; !ok {
		problems = append(problems, "the script did not finish")
	}
	for _, l := range devicesLinks {
		line := linkLine(parts["links"], l.name)
		if !strings.Contains(line, l.want) {
			problems = append(problems, fmt.Sprintf("link %s: %q lacks %q", l.name, line, l.want))
		}
	}
	for part, wants := range devicesOutput {
		for _, w := range wants {
			if !strings.Contains(parts[part], w) {
				problems = append(problems, fmt.Sprintf("%s: lacks %q", part, w))
			}
		}
	}
	for _, name := range devicesDeleted {
		if line := linkLine(parts["deleted"], name); line != "" {
			problems = append(problems, fmt.Sprintf("link %s is still there after its deletion: %q", name, line))
		}
	}
	return problems
}

// linkLine is the line of `ip -o link` about link name, or "".
func linkLine(links, name string) string {
	re := regexp.MustCompile(`(?m)^\d+: ` + regexp.QuoteMeta(name) + `[:@].*$`)
	return re.FindString(links)
}

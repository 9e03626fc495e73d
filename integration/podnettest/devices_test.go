package podnettest

import (
	"strings"
	"testing"
)

// devicesOK is DevicesScript's output as a guest printed it, cut to what
// DevicesCheck reads.
const devicesOK = `--- tun
crw-------    1 root     root       10, 200 Dec  6 22:12 /dev/net/tun
--- brctl
bridge name	bridge id		STP enabled	interfaces
br-brctl		8000.000000000000	no
bridge-nf-call-iptables=1
--- links
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN
3: br-brctl: <BROADCAST,MULTICAST> mtu 1500\    bridge forward_delay 1500 hello_time 200
4: br-ip: <BROADCAST,MULTICAST> mtu 1500\    bridge forward_delay 1500 hello_time 200
5: tun0: <POINTOPOINT,MULTICAST,NOARP> mtu 1500\    tun type tun pi off
6: tap0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop master br-ip state DOWN\    tun type tap pi off
7: d0: <BROADCAST,NOARP> mtu 1500\    dummy addrgenmode eui64
8: d0.10@d0: <BROADCAST,NOARP,M-DOWN> mtu 1500\    vlan protocol 802.1Q id 10 <REORDER_HDR>
9: vx0: <BROADCAST,MULTICAST> mtu 1450\    vxlan id 42 dev d0 srcport 0 0 dstport 4789
10: mv0@d0: <BROADCAST,MULTICAST,M-DOWN> mtu 1500\    macvlan mode bridge bcqueuelen 1000
12: iv0@d1: <BROADCAST,MULTICAST,M-DOWN> mtu 1500\    ipvlan  mode l2 bridge
13: wg0: <POINTOPOINT,NOARP> mtu 1420\    wireguard addrgenmode eui64
15: ve0@ve1: <BROADCAST,MULTICAST,M-DOWN> mtu 1500\    veth addrgenmode eui64
--- tc
qdisc clsact ffff: parent ffff:fff1
filter protocol all pref 49152 bpf chain 0 handle 0x1 not_in_hw bytecode '1,6 0 0 4294967295'
	action order 1: bpf bytecode '1,6 0 0 0' default-action pipe
filter protocol all pref 49152 matchall chain 0 handle 0x1
	action order 1: mirred (Egress Redirect to device tap0) stolen
--- nft
table inet cocoon {
		tcp dport 9999 counter packets 0 bytes 0 drop
}
--- ipset
Name: cocoon
Type: hash:ip
192.0.2.1
-A INPUT -m set --match-set cocoon src -j DROP
-A FORWARD -m set --match-set cocoon src -j DROP
--- ipvs
TCP  10.96.0.10:80 rr
  -> 192.0.2.10:8080              Masq    1      0          0
--- deleted
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536
6: tap0: <BROADCAST,MULTICAST> mtu 1500
13: wg0: <POINTOPOINT,NOARP> mtu 1420
--- done
`

func TestDevicesCheck(t *testing.T) {
	if p := DevicesCheck(devicesOK); len(p) != 0 {
		t.Errorf("a complete output: %q", p)
	}
	for _, tc := range []struct{ name, out, want string }{
		{"unfinished", strings.TrimSuffix(devicesOK, "--- done\n"), "did not finish"},
		{"no tun", strings.Replace(devicesOK, "10, 200", "", 1), `tun: lacks "10, 200"`},
		{"no wireguard", strings.Replace(devicesOK, "wireguard addrgenmode", "addrgenmode", 1), "link wg0"},
		{"not deleted", strings.Replace(devicesOK, "--- done", "5: tun0: <POINTOPOINT>\n--- done", 1), "link tun0 is still there"},
	} {
		p := DevicesCheck(tc.out)
		if !strings.Contains(strings.Join(p, "\n"), tc.want) {
			t.Errorf("%s: %q, want a problem with %q", tc.name, p, tc.want)
		}
	}
}

func TestInitScript(t *testing.T) {
	for _, b := range Backends {
		s := InitScript(b)
		for _, want := range []string{"/usr/sbin/iptables-" + b + " -t nat -A MESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
			"/usr/sbin/ip6tables-" + b + " -t mangle -A MESH_TPROXY ! -d ::1/128 -p tcp -j TPROXY --on-port 15006 --on-ip ::",
			"ip rule add fwmark 1337 lookup 133", "echo " + RulesInstalled} {
			if !strings.Contains(s, want) {
				t.Errorf("InitScript(%s) lacks %q", b, want)
			}
		}
		if strings.Contains(s, "{") {
			t.Errorf("InitScript(%s) has a placeholder left:\n%s", b, s)
		}
	}
}

package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Port forwarding (CRI PortForward, kubectl port-forward): containerd and
// CRI-O enter the pod's network namespace on the host and dial
// localhost:PORT there, but under cocoon the pod's services listen in the
// guest. ListenLoopback opens a listener on the namespace's loopback,
// RedirectLoopback sends every TCP connection made in the namespace to its
// loopback addresses to that listener with an nftables redirect (a NAT
// OUTPUT chain, which sees only connections made in the namespace itself:
// traffic between the pod's interface and the tap never reaches the
// namespace's IP stack), and OriginalPort recovers the port that the
// connection was made to, which is then dialed in the guest.

// forwardTable is the nftables table (family inet) that holds the redirect.
// It is cocoon's alone: RedirectLoopback replaces it and RemoveRedirect
// deletes it whole, never touching another table.
const forwardTable = "cocoon_portforward"

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h),
// which golang.org/x/sys/unix lacks: SO_ORIGINAL_DST's number at level
// SOL_IPV6.
const ip6tSoOriginalDst = 80

// ListenLoopback opens TCP listeners on 127.0.0.1 and ::1, on ports the
// kernel picks, in the network namespace at nsPath. v6 is nil when the
// namespace has no ::1 (IPv6 disabled there).
func ListenLoopback(nsPath string) (v4, v6 *net.TCPListener, err error) {
	err = Do(nsPath, func() error {
		// The sockets are created on this thread, in the namespace, and
		// stay there whichever thread uses them later.
		var err error
		if v4, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			return err
		}
		v6, err = net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
		if err != nil {
			v6 = nil
			if !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.EAFNOSUPPORT) {
				v4.Close()
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("listening on the loopback of %s: %w", nsPath, err)
	}
	return v4, v6, nil
}

// RedirectLoopback makes every TCP connection that is made in the network
// namespace at nsPath to 127.0.0.1 go to port v4 of 127.0.0.1, and every
// one to ::1 go to port v6 of ::1 (none when v6 is 0), replacing what an
// earlier call installed. RemoveRedirect undoes it.
func RedirectLoopback(nsPath string, v4, v6 uint16) error {
	if v4 == 0 {
		return fmt.Errorf("redirecting the loopback of %s: no port", nsPath)
	}
	err := withNFT(nsPath, func(c *nftables.Conn) error {
		t := &nftables.Table{Family: nftables.TableFamilyINet, Name: forwardTable}
		// Adding, deleting and adding again in one transaction replaces
		// the table whether or not it existed.
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
		ch := c.AddChain(&nftables.Chain{
			Name:     "output",
			Table:    t,
			Type:     nftables.ChainTypeNAT,
			Hooknum:  nftables.ChainHookOutput,
			Priority: nftables.ChainPriorityNATDest,
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: redirectRule(unix.NFPROTO_IPV4, net.IPv4(127, 0, 0, 1).To4(), 16, v4)})
		if v6 != 0 {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: redirectRule(unix.NFPROTO_IPV6, net.IPv6loopback, 24, v6)})
		}
		return c.Flush()
	})
	if err != nil {
		return fmt.Errorf("redirecting the loopback of %s: %w", nsPath, err)
	}
	return nil
}

// redirectRule is `meta nfproto FAMILY ip[6] daddr ADDR meta l4proto tcp
// redirect to :PORT`; offset is that of the destination address in the
// family's header.
func redirectRule(family byte, addr net.IP, offset uint32, port uint16) []expr.Any {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], port)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Immediate{Register: 1, Data: p[:]},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}

// RemoveRedirect removes what RedirectLoopback installed in the network
// namespace at nsPath. A namespace or table that no longer exists has
// nothing left to remove.
func RemoveRedirect(nsPath string) error {
	err := withNFT(nsPath, func(c *nftables.Conn) error {
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return err
		}
		for _, t := range tables {
			if t.Name == forwardTable {
				c.DelTable(t)
				return c.Flush()
			}
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the loopback redirect of %s: %w", nsPath, err)
	}
	return nil
}

// withNFT calls fn with an nftables connection to the namespace at nsPath.
func withNFT(nsPath string, fn func(*nftables.Conn) error) error {
	ns, err := openNS(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	return fn(c)
}

// OriginalPort returns the port that a connection accepted from a listener
// of ListenLoopback was made to, before RedirectLoopback sent it there.
func OriginalPort(c *net.TCPConn) (uint16, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("reading the original destination: %w", err)
	}
	v6 := false
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok && a.IP.To4() == nil {
		v6 = true
	}
	var port uint16
	var serr error
	err = raw.Control(func(fd uintptr) {
		if v6 {
			// IP6T_SO_ORIGINAL_DST fills a sockaddr_in6, which
			// IPv6MTUInfo begins with.
			var info *unix.IPv6MTUInfo
			info, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSoOriginalDst)
			if serr == nil {
				port = ntohs(info.Addr.Port)
			}
			return
		}
		// SO_ORIGINAL_DST fills a sockaddr_in, which fits in the 16
		// bytes of an IPv6Mreq.
		var mreq *unix.IPv6Mreq
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if serr == nil {
			port = binary.BigEndian.Uint16(mreq.Multiaddr[2:4])
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("reading the original destination: %w", err)
	}
	return port, nil
}

// ntohs turns a port as the kernel stores it in a sockaddr (network byte
// order) into a number.
func ntohs(p uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], p)
	return binary.BigEndian.Uint16(b[:])
}

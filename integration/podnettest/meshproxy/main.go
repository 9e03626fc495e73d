// Command meshproxy stands for a service mesh's sidecar proxy in cocoon's
// integration tests (see package podnettest). It listens on the outbound
// port, where a mesh's nat rules redirect a pod's outbound TCP, and on the
// inbound port with transparent sockets (IP_TRANSPARENT), where TPROXY
// rules deliver a pod's inbound TCP; then it drops to the proxy's user.
// Every connection gets one HTTP response whose body names the port and
// the connection's original destination, found as Envoy finds it:
// SO_ORIGINAL_DST for a redirected connection, the local address for a
// TPROXY one.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	outbound := flag.Int("outbound", 15001, "the port nat rules redirect outbound connections to")
	inbound := flag.Int("inbound", 15006, "the port TPROXY rules deliver inbound connections to")
	uid := flag.Int("uid", 1337, "the user (and group) to run as once listening")
	flag.Parse()
	var ls []listener
	for _, netw := range []string{"tcp4", "tcp6"} {
		for _, l := range []listener{{port: *outbound}, {port: *inbound, transparent: true}} {
			lc := net.ListenConfig{}
			if l.transparent {
				lc.Control = transparent
			}
			var err error
			if l.Listener, err = lc.Listen(context.Background(), netw, fmt.Sprintf(":%d", l.port)); err != nil {
				fail("listening on %s port %d: %v", netw, l.port, err)
			}
			ls = append(ls, l)
		}
	}
	if err := syscall.Setgroups(nil); err != nil {
		fail("setgroups: %v", err)
	}
	if err := syscall.Setgid(*uid); err != nil {
		fail("setgid %d: %v", *uid, err)
	}
	if err := syscall.Setuid(*uid); err != nil {
		fail("setuid %d: %v", *uid, err)
	}
	fmt.Printf("meshproxy: listening on %d and %d (transparent) as uid %d\n", *outbound, *inbound, os.Getuid())
	for _, l := range ls[1:] {
		go l.serve()
	}
	ls[0].serve()
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "meshproxy: "+format+"\n", args...)
	os.Exit(1)
}

type listener struct {
	net.Listener
	port        int
	transparent bool
}

func (l listener) serve() {
	for {
		c, err := l.Accept()
		if err != nil {
			fail("accepting on port %d: %v", l.port, err)
		}
		go l.answer(c.(*net.TCPConn))
	}
}

// answer reads the request's first line and answers with where the
// connection was going.
func (l listener) answer(c *net.TCPConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	orig := c.LocalAddr().String()
	if !l.transparent {
		var err error
		if orig, err = originalDst(c); err != nil {
			orig = "unknown (" + err.Error() + ")"
		}
	}
	body := fmt.Sprintf("meshproxy port=%d orig=%s request=%q\n", l.port, orig, strings.TrimSpace(line))
	fmt.Print(body)
	fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// transparent sets IP_TRANSPARENT (IPV6_TRANSPARENT) on a listening
// socket, which TPROXY requires of the socket it delivers to.
func transparent(network, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if network == "tcp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// originalDst is the destination a redirected connection had before the
// nat rule changed it, from conntrack: SO_ORIGINAL_DST
// (IP6T_SO_ORIGINAL_DST, same number), which fills a sockaddr_in(6).
func originalDst(c *net.TCPConn) (string, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return "", err
	}
	var addr string
	var serr error
	err = rc.Control(func(fd uintptr) {
		if c.LocalAddr().(*net.TCPAddr).IP.To4() != nil {
			// A sockaddr_in is 16 bytes, as is an ipv6_mreq.
			var m *unix.IPv6Mreq
			if m, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST); serr == nil {
				b := m.Multiaddr
				addr = fmt.Sprintf("%d.%d.%d.%d:%d", b[4], b[5], b[6], b[7], int(b[2])<<8|int(b[3]))
			}
			return
		}
		// IP6T_SO_ORIGINAL_DST has SO_ORIGINAL_DST's number; a
		// sockaddr_in6 (28 bytes) starts an ip6_mtuinfo (32). Its port is
		// in network byte order, read here as a little-endian uint16.
		var m *unix.IPv6MTUInfo
		if m, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, unix.SO_ORIGINAL_DST); serr == nil {
			port := int(m.Addr.Port&0xff)<<8 | int(m.Addr.Port>>8)
			addr = net.JoinHostPort(net.IP(m.Addr.Addr[:]).String(), fmt.Sprint(port))
		}
	})
	if err != nil {
		return "", err
	}
	return addr, serr
}

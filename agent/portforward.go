package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/api"
)

// portForwardDialTimeout bounds one dial to the guest's loopback; a local
// listener answers at once, so only a wedged guest takes long.
const portForwardDialTimeout = 10 * time.Second

// PortForwardHandler serves one StreamPortForward stream the host opened:
// it connects conn to port of the guest's loopback. The handler owns conn
// and must close it. ctx ends when the server stops.
type PortForwardHandler func(ctx context.Context, port uint16, conn net.Conn)

// PortForward is the server's PortForwardHandler. Containers share the
// guest's network namespace (the pod's), so it dials 127.0.0.1:port, then
// [::1]:port, as containerd and CRI-O dial localhost in the pod's namespace
// under runc; it answers with an api.PortForwardStatus and, once connected,
// copies bytes both ways until both sides are done.
func (s *Service) PortForward(ctx context.Context, port uint16, conn net.Conn) {
	defer conn.Close()
	log := s.cfg.Log.WithField("port", port)
	target, status, err := dialLoopback(ctx, port)
	if _, werr := conn.Write([]byte{byte(status)}); werr != nil {
		log.WithError(werr).Debug("port forward: answering the host")
		if target != nil {
			target.Close()
		}
		return
	}
	if err != nil {
		log.WithError(err).Debug("port forward refused")
		return
	}
	defer target.Close()
	up, down := splice(conn, target)
	log.WithFields(logrus.Fields{"in": up, "out": down}).Debug("port forward done")
}

// dialLoopback connects to port on 127.0.0.1, else on ::1.
func dialLoopback(ctx context.Context, port uint16) (net.Conn, api.PortForwardStatus, error) {
	d := net.Dialer{Timeout: portForwardDialTimeout}
	p := strconv.Itoa(int(port))
	c, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return c, api.PortForwardConnected, nil
	}
	c, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return c, api.PortForwardConnected, nil
	}
	err := errors.Join(err4, err6)
	if errors.Is(err4, syscall.ECONNREFUSED) || errors.Is(err6, syscall.ECONNREFUSED) {
		return nil, api.PortForwardRefused, err
	}
	return nil, api.PortForwardFailed, err
}

// splice copies a to b and b to a until both directions have ended, passing
// each end of file on as a half close, and returns the byte counts. An
// error in one direction closes both connections, which ends the other.
func splice(a, b net.Conn) (aToB, bToA int64) {
	done := make(chan int64, 1)
	go func() { done <- copyHalf(b, a) }()
	bToA = copyHalf(a, b)
	aToB = <-done
	return aToB, bToA
}

// copyHalf copies src to dst; at src's end of file it closes dst's write
// side, and on an error it closes both.
func copyHalf(dst, src net.Conn) int64 {
	n, err := io.Copy(dst, src)
	if err != nil {
		dst.Close()
		src.Close()
		return n
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		// A yamux stream's Close is a half close: it sends FIN and
		// still reads what the other side sends.
		dst.Close()
	}
	return n
}

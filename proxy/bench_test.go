package proxy

import (
	"io"
	"net"
	"testing"

	"github.com/hashicorp/yamux"
)

const benchChunk = 1 << 20

// benchTransfer moves b.N MiB over one stream, agent to host (down) or
// host to agent, between a fake agent and a client of open.
func benchTransfer(b *testing.B, h *harness, open func() net.Conn, down bool) {
	done := make(chan int64, 1)
	chunk := make([]byte, benchChunk)
	h.startAgent(func(st net.Conn) {
		defer st.Close()
		if down {
			for range b.N {
				st.Write(chunk)
			}
			return
		}
		n, _ := io.Copy(io.Discard, st)
		done <- n
	})
	c := open()
	defer c.Close()
	b.SetBytes(benchChunk)
	b.ResetTimer()
	if down {
		n, err := io.CopyBuffer(io.Discard, c, make([]byte, DefaultBufferSize))
		if err != nil || n != int64(b.N)*benchChunk {
			b.Fatalf("read %d bytes, %v", n, err)
		}
		return
	}
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if n := <-done; n != int64(b.N)*benchChunk {
		b.Fatalf("agent read %d bytes", n)
	}
}

// BenchmarkProxy measures a stream through the proxy: client on a unix
// socket, proxy, yamux over a socket pair, fake agent.
func BenchmarkProxy(b *testing.B) {
	for _, dir := range []struct {
		name string
		down bool
	}{{"agent-to-host", true}, {"host-to-agent", false}} {
		b.Run(dir.name, func(b *testing.B) {
			h := newHarness(b)
			benchTransfer(b, h, func() net.Conn { return h.dial() }, dir.down)
		})
	}
}

// BenchmarkDirect is the baseline without the proxy hop: the client holds
// the yamux session itself.
func BenchmarkDirect(b *testing.B) {
	for _, dir := range []struct {
		name string
		down bool
	}{{"agent-to-host", true}, {"host-to-agent", false}} {
		b.Run(dir.name, func(b *testing.B) {
			hostEnd, agentEnd := socketPair(b)
			h := &harness{tb: b, agentEnd: agentEnd}
			sess, err := yamux.Client(hostEnd, sessionConfig(testLog(b), 0))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				sess.Close()
				agentEnd.Close()
				h.agent.Close()
				h.agentWG.Wait()
			})
			benchTransfer(b, h, func() net.Conn {
				st, err := sess.OpenStream()
				if err != nil {
					b.Fatal(err)
				}
				return closeWriteStream{st}
			}, dir.down)
		})
	}
}

// closeWriteStream gives a yamux stream the CloseWrite of a unix conn.
type closeWriteStream struct{ *yamux.Stream }

func (s closeWriteStream) CloseWrite() error { return s.Stream.Close() }

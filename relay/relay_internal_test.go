package relay

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestDrain(t *testing.T) {
	t.Run("done", func(t *testing.T) {
		done := make(chan struct{})
		close(done)
		if !newActivity().drain(done, time.Hour, time.Hour) {
			t.Error("drain gave up on finished output")
		}
	})
	t.Run("idle", func(t *testing.T) {
		begin := time.Now()
		if newActivity().drain(make(chan struct{}), 50*time.Millisecond, time.Hour) {
			t.Error("drain returned true on output that never ends")
		}
		if d := time.Since(begin); d < 50*time.Millisecond || d > 5*time.Second {
			t.Errorf("gave up after %v", d)
		}
	})
	t.Run("moving", func(t *testing.T) {
		// Output that keeps moving is waited for beyond the idle timeout,
		// up to the cap.
		a := newActivity()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
					a.touch()
				}
			}
		}()
		begin := time.Now()
		if a.drain(make(chan struct{}), 100*time.Millisecond, 400*time.Millisecond) {
			t.Error("drain returned true on output that never ends")
		}
		if d := time.Since(begin); d < 400*time.Millisecond || d > 5*time.Second {
			t.Errorf("gave up after %v, want the 400ms cap", d)
		}
	})
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestCopyStream(t *testing.T) {
	var dst bytes.Buffer
	n, rerr, werr := copyStream(&dst, strings.NewReader("abc"), make([]byte, 2), nil)
	if n != 3 || rerr != nil || werr != nil || dst.String() != "abc" {
		t.Errorf("copy: %d, %v, %v, %q", n, rerr, werr, dst.String())
	}
	boom := errors.New("boom")
	if _, rerr, werr := copyStream(failingWriter{boom}, strings.NewReader("abc"), make([]byte, 8), nil); rerr != nil || werr != boom {
		t.Errorf("failing writer: %v, %v", rerr, werr)
	}
	if _, rerr, werr := copyStream(io.Discard, io.MultiReader(strings.NewReader("x"), iotest.ErrReader(boom)), make([]byte, 8), nil); rerr != boom || werr != nil {
		t.Errorf("failing reader: %v, %v", rerr, werr)
	}
}

package agentclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/cocoon-containers/cocoon/api"
)

// ErrNotReady is returned by WaitReady when the agent did not answer within
// the boot timeout.
var ErrNotReady = errors.New("agent did not answer")

// errNotServing is an attempt's error when the agent answers but has not
// finished its init duties.
var errNotServing = errors.New("agent is not serving yet")

const (
	// consoleTailBytes and consoleTailLines bound the console log's tail in
	// WaitReady's error.
	consoleTailBytes = 2 << 10
	consoleTailLines = 20
)

// Backoff is a capped exponential back-off: the n-th delay (from 0) is
// Initial * Factor^n, at most Max.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
}

// DefaultBackoff starts at 20 ms and doubles up to 500 ms: quick to notice a
// fast guest, without spinning on a slow one.
func DefaultBackoff() Backoff {
	return Backoff{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond, Factor: 2}
}

// Delay returns the delay before retry n (from 0). A Backoff without an
// Initial delay is DefaultBackoff.
func (b Backoff) Delay(n int) time.Duration {
	if b.Initial <= 0 {
		b = DefaultBackoff()
	}
	factor := b.Factor
	if factor < 1 {
		factor = 1
	}
	d := float64(b.Initial)
	for range n {
		d *= factor
		if b.Max > 0 && d >= float64(b.Max) {
			return b.Max
		}
	}
	if b.Max > 0 && d > float64(b.Max) {
		return b.Max
	}
	return time.Duration(d)
}

// sleep waits d on the real clock or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitReady connects to the agent while the guest boots: it retries
// connecting and calling Check (each attempt bounded by the attempt timeout),
// with back-off between attempts, until the agent answers that it serves or
// the boot timeout passes. Then the error wraps ErrNotReady and the last
// attempt's error, and ends with the tail of the guest's console log.
func WaitReady(ctx context.Context, d Dialer, opts Options) (*Client, error) {
	bootTimeout := opts.bootTimeout()
	bootCtx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	wait := opts.Sleep
	if wait == nil {
		wait = sleep
	}
	log := opts.log()
	var lastErr error
	for n := 0; ; n++ {
		c, err := tryConnect(bootCtx, d, opts)
		if err == nil {
			log.WithField("attempts", n+1).Debug("agent ready")
			return c, nil
		}
		lastErr = err
		delay := opts.Backoff.Delay(n)
		log.WithError(err).WithField("attempt", n+1).Debugf("agent not ready, retrying in %v", delay)
		if bootCtx.Err() != nil || wait(bootCtx, delay) != nil {
			break
		}
	}
	if ctx.Err() != nil { // the caller gave up, not the boot timeout
		return nil, fmt.Errorf("waiting for agent: %w", ctx.Err())
	}
	err := fmt.Errorf("%w within %v: %w", ErrNotReady, bootTimeout, lastErr)
	if opts.ConsoleLog != "" {
		tail, terr := consoleTail(opts.ConsoleLog, consoleTailBytes, consoleTailLines)
		switch {
		case terr != nil:
			err = fmt.Errorf("%w; console log unavailable: %v", err, terr)
		case tail == "":
			err = fmt.Errorf("%w; console log is empty", err)
		default:
			err = fmt.Errorf("%w; console tail:\n%s", err, tail)
		}
	}
	return nil, err
}

// tryConnect is one attempt of WaitReady.
func tryConnect(ctx context.Context, d Dialer, opts Options) (*Client, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.attemptTimeout())
	defer cancel()
	c, err := Connect(ctx, d, opts)
	if err != nil {
		return nil, err
	}
	resp, err := c.Check(ctx, &api.CheckRequest{})
	if err == nil && !resp.GetServing() {
		err = errNotServing
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// consoleTail returns the last maxLines lines of the file at path, read from
// its last maxBytes bytes, without control characters other than newlines
// and tabs (consoles are full of carriage returns and escape sequences).
func consoleTail(path string, maxBytes int64, maxLines int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(fi.Size()-maxBytes, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, maxBytes))
	if err != nil {
		return "", err
	}
	s := string(b)
	if off > 0 { // the first line is cut: drop it
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) && r != unicode.ReplacementChar {
			return r
		}
		return -1
	}, s)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n"), nil
}

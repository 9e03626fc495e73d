// Package hooks runs OCI hooks on the host as runc does: each hook's path
// with its args and env (a hook without env inherits the runtime's, as
// with runc), the
// container's state JSON on stdin, stdout and stderr captured for the
// error, killed when its timeout passes. Hooks of one kind run in order and
// the first failure stops them.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Kind names a hook point of the OCI runtime spec.
type Kind string

// The hook points that run on the host.
const (
	Prestart        Kind = "prestart"
	CreateRuntime   Kind = "createRuntime"
	CreateContainer Kind = "createContainer"
	Poststart       Kind = "poststart"
	Poststop        Kind = "poststop"
)

// maxOutput bounds how much of a failed hook's output an error quotes.
const maxOutput = 4096

// Of returns the hooks of kind k in h (nil-safe).
func Of(h *specs.Hooks, k Kind) []specs.Hook {
	if h == nil {
		return nil
	}
	switch k {
	case Prestart:
		return h.Prestart //nolint:staticcheck // deprecated, but Docker sends it
	case CreateRuntime:
		return h.CreateRuntime
	case CreateContainer:
		return h.CreateContainer
	case Poststart:
		return h.Poststart
	case Poststop:
		return h.Poststop
	}
	return nil
}

// Run runs hs in order with st on their stdin; it stops at the first
// failure, which it returns naming the hook.
func Run(ctx context.Context, k Kind, hs []specs.Hook, st *specs.State) error {
	if len(hs) == 0 {
		return nil
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding state for %s hooks: %w", k, err)
	}
	for i, h := range hs {
		if err := runOne(ctx, h, data); err != nil {
			return fmt.Errorf("error running %s hook #%d (%s): %w", k, i, h.Path, err)
		}
	}
	return nil
}

func runOne(ctx context.Context, h specs.Hook, state []byte) error {
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("invalid timeout %d", *h.Timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	var stdout, stderr bytes.Buffer
	cmd := &exec.Cmd{
		Path:   h.Path,
		Args:   h.Args,
		Env:    h.Env,
		Stdin:  bytes.NewReader(state),
		Stdout: &stdout,
		Stderr: &stderr,
		// Its own process group, so that a timeout kills what it started.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if len(cmd.Args) == 0 {
		cmd.Args = []string{h.Path}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w%s", err, output(&stdout, &stderr))
		}
		return nil
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if h.Timeout != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("hook ran past specified timeout of %ds", *h.Timeout)
		}
		return ctx.Err()
	}
}

// output quotes what a failed hook printed, as runc's error does.
func output(stdout, stderr *bytes.Buffer) string {
	var b strings.Builder
	for _, o := range []struct {
		name string
		buf  *bytes.Buffer
	}{{"stdout", stdout}, {"stderr", stderr}} {
		s := strings.TrimSpace(o.buf.String())
		if s == "" {
			continue
		}
		if len(s) > maxOutput {
			s = s[:maxOutput] + "..."
		}
		fmt.Fprintf(&b, ", %s: %s", o.name, strings.ReplaceAll(s, "\n", "\\n"))
	}
	return b.String()
}

package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// defaultDialTimeout bounds dialing the QMP socket when ctx has no deadline.
const defaultDialTimeout = 5 * time.Second

// dialFunc returns an unconnected QMP monitor. Tests substitute
// qmptest.NewMonitor.
type dialFunc func(ctx context.Context) (qmp.Monitor, error)

// socketDialer dials QEMU's QMP unix socket at path.
func socketDialer(path string) dialFunc {
	return func(ctx context.Context) (qmp.Monitor, error) {
		timeout := defaultDialTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
		if timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
		return qmp.NewSocketMonitor("unix", path, timeout)
	}
}

// execute runs one QMP command within ctx on a connection of its own and
// decodes the command's "return" value into out (when out is not nil).
//
// One connection per command: QEMU's QMP socket serves one client at a
// time, and the short-lived runtime CLI and the long-lived shim both talk
// to the same VM, so nobody may hold it.
//
// go-qemu's Connect and Run take no context; they run in goroutines, and
// when ctx ends first the connection is closed under them. A Connect that
// never returns (QEMU stopped answering) leaves its goroutine until QEMU
// answers or dies, which Stop's SIGKILL ensures.
func execute(ctx context.Context, dial dialFunc, command string, out any) error {
	return executeArgs(ctx, dial, command, nil, out)
}

// executeArgs is execute for a command with arguments (nil for none).
func executeArgs(ctx context.Context, dial dialFunc, command string, args, out any) error {
	mon, err := dial(ctx)
	if err != nil {
		return fmt.Errorf("qmp %s: connecting: %w", command, err)
	}

	connected := make(chan error, 1)
	go func() { connected <- mon.Connect() }()
	select {
	case err := <-connected:
		if err != nil {
			_ = mon.Disconnect()
			return fmt.Errorf("qmp %s: handshake: %w", command, err)
		}
	case <-ctx.Done():
		// Disconnect may not run concurrently with Connect (go-qemu sets
		// fields there); close the connection once Connect gives up.
		go func() {
			<-connected
			_ = mon.Disconnect()
		}()
		return fmt.Errorf("qmp %s: handshake: %w", command, ctx.Err())
	}

	raw, err := json.Marshal(qmp.Command{Execute: command, Args: args})
	if err != nil {
		_ = mon.Disconnect()
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := mon.Run(raw)
		done <- result{b, err}
	}()
	var r result
	select {
	case r = <-done:
		_ = mon.Disconnect()
	case <-ctx.Done():
		// Closing the connection makes Run return.
		_ = mon.Disconnect()
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
	if r.err != nil {
		return fmt.Errorf("qmp %s: %w", command, r.err)
	}
	if out == nil {
		return nil
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(r.out, &resp); err != nil {
		return fmt.Errorf("qmp %s: decoding response: %w", command, err)
	}
	if len(resp.Return) == 0 {
		return fmt.Errorf("qmp %s: %w", command, errNoReturn)
	}
	if err := json.Unmarshal(resp.Return, out); err != nil {
		return fmt.Errorf("qmp %s: decoding return value: %w", command, err)
	}
	return nil
}

var errNoReturn = errors.New("response has no return value")

// statusInfo is the return value of query-status.
type statusInfo struct {
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

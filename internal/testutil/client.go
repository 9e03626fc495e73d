package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Result is what a client command (docker, podman) left.
type Result struct {
	Stdout, Stderr string
	// Code is the exit status; -1 when the command could not run.
	Code int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
}

// RunClient runs the command that build makes, with stdin if given, and
// fails the test if it takes longer than timeout.
func RunClient(t testing.TB, timeout time.Duration, stdin string, build func(context.Context) *exec.Cmd) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := build(ctx)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			t.Fatalf("%v: timed out after %v", cmd.Args, timeout)
		}
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: code}
}

// StartUntilCleanup starts cmd, made with a context that cancel ends, and
// stops it (cancel, then wait) when the test ends.
func StartUntilCleanup(t testing.TB, cmd *exec.Cmd, cancel context.CancelFunc) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
}

package containerdtest

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/creack/pty"
)

// RunInTerminal runs cmd on a new pty of rows×cols (its stdin, stdout and
// stderr), types input after delay unless input is empty, and returns what
// the terminal showed (without carriage returns) and the exit code.
func RunInTerminal(cmd *exec.Cmd, rows, cols uint16, input string, delay time.Duration) (string, int, error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return "", -1, err
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		tty.Close()
		return "", -1, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	err = cmd.Start()
	tty.Close()
	if err != nil {
		return "", -1, err
	}
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&out, ptmx); close(copied) }()
	if input != "" {
		time.Sleep(delay)
		_, _ = ptmx.Write([]byte(input))
	}
	_ = cmd.Wait()
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	return strings.ReplaceAll(out.String(), "\r", ""), cmd.ProcessState.ExitCode(), nil
}

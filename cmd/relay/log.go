package main

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/sirupsen/logrus"
)

// openLog returns the relay's logger: to path when set, else nowhere, since
// the relay's stderr is the process's. Entries carry pid, the relay's PID
// on the host.
func openLog(path, format string, debug bool, pid int) (*logrus.Entry, error) {
	l := logrus.New()
	l.SetOutput(io.Discard)
	switch format {
	case "text":
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("invalid --log-format %q: want text or json", format)
	}
	if debug {
		l.SetLevel(logrus.DebugLevel)
	}
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening log: %w", err)
		}
		l.SetOutput(f) // open until the relay exits
	}
	return logrus.NewEntry(l).WithField("pid", pid), nil
}

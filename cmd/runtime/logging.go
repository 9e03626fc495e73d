package main

import (
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// logKey is where the application keeps its logger (cli.App.Metadata): the
// command's own, never logrus's standard one, so that nothing here sets a
// process-wide logging state.
const logKey = "log"

// logger returns the command's logger.
func logger(c *cli.Context) *logrus.Logger {
	if l, ok := c.App.Metadata[logKey].(*logrus.Logger); ok {
		return l
	}
	return logrus.StandardLogger()
}

// setupLogging follows runc: --log sends logs to a file, --log-format json
// writes one JSON object a line (containerd reads these to report errors).
// The level is warn, debug with --debug, or the configuration's
// (runtime.log_level) once it is loaded.
func setupLogging(c *cli.Context, l *logrus.Logger) error {
	l.SetLevel(logrus.WarnLevel)
	if c.Bool("debug") {
		l.SetLevel(logrus.DebugLevel)
	}
	switch f := c.String("log-format"); f {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: c.String("log") == "", TimestampFormat: time.RFC3339Nano})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("unknown log-format %q", f)
	}
	if p := c.String("log"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
		if err != nil {
			return fmt.Errorf("opening log file: %w", err)
		}
		l.SetOutput(f)
	}
	return nil
}

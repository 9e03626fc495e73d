package main

import (
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// setupLogging follows runc: --log sends logs to a file, --log-format json
// writes one JSON object a line (containerd reads these to report errors).
func setupLogging(c *cli.Context) error {
	logrus.SetLevel(logrus.WarnLevel)
	if c.Bool("debug") {
		logrus.SetLevel(logrus.DebugLevel)
	}
	switch f := c.String("log-format"); f {
	case "text":
		logrus.SetFormatter(&logrus.TextFormatter{DisableTimestamp: c.String("log") == "", TimestampFormat: time.RFC3339Nano})
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("unknown log-format %q", f)
	}
	if p := c.String("log"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
		if err != nil {
			return fmt.Errorf("opening log file: %w", err)
		}
		logrus.SetOutput(f)
	}
	return nil
}

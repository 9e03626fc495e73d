// Command cocoon-runtime is cocoon's OCI runtime: a runc-compatible CLI
// whose containers each run in their own lightweight VM.
package main

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags -X main.version=...
var version = "dev"

func main() {
	app := &cli.App{
		Name:    "cocoon-runtime",
		Usage:   "run OCI containers, each in its own lightweight virtual machine",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: "/run/cocoon", Usage: "root directory for container state"},
			&cli.StringFlag{Name: "log", Usage: "write logs to this file instead of stderr"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.BoolFlag{Name: "debug", Usage: "enable debug logging"},
			&cli.StringFlag{Name: "config", Usage: "configuration file (default $COCOON_CONFIG or /etc/cocoon/configuration.toml)"},
		},
		Before: setupLogging,
		Commands: []*cli.Command{
			probeCommand,
			versionCommand,
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	if err := app.Run(os.Args); err != nil {
		logrus.Error(err)
		if os.Getenv("COCOON_LOG_TO_STDERR") != "" || !loggingToStderr {
			fmt.Fprintln(os.Stderr, "cocoon-runtime:", err)
		}
		os.Exit(1)
	}
}

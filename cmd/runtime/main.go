// Command cocoon-runtime is cocoon's OCI runtime: a runc-compatible CLI
// whose containers each run in their own lightweight VM.
//
// State lives under --root (default /run/cocoon), one directory per
// container (see package container); sandbox VMs live under /run/cocoon/.vm,
// one directory per root (container.RuntimeSandboxRoot).
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cocoon-containers/cocoon/factory"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags -X main.version=...
var version = "dev"

func main() {
	// A refill of the sandbox pool that a command of this program started
	// runs here, and exits.
	factory.Main()
	closeOnExecInherited()
	// logToFile is set when --log sends log lines to a file: errors are
	// then printed to stderr too, as runc prints them.
	logToFile := false
	log := logrus.New()
	app := newApp(log, &logToFile)
	if err := app.Run(os.Args); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) && err.Error() == "" {
			// A container's exit status (run, exec), already shown.
			os.Exit(ec.ExitCode())
		}
		log.Error(err)
		if os.Getenv("COCOON_LOG_TO_STDERR") != "" || logToFile {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}

// newApp returns the command line application, which logs to log; its
// Before hook sets *logToFile when --log is given.
func newApp(log *logrus.Logger, logToFile *bool) *cli.App {
	return &cli.App{
		Name:    "cocoon-runtime",
		Usage:   "run OCI containers, each in its own lightweight virtual machine",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: "/run/cocoon", Usage: "root directory for storage of container state"},
			&cli.StringFlag{Name: "log", Usage: "set the log file to write runtime logs to (default is stderr)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "set the log format ('text' (default), or 'json')"},
			&cli.BoolFlag{Name: "debug", Usage: "enable debug logging"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "linux.cgroupsPath is systemd's slice:prefix:name (the sandbox's host cgroup; the container's own is the guest's)"},
			&cli.StringFlag{Name: "rootless", Value: "auto", Usage: "accepted for compatibility ('true', 'false', or 'auto')"},
			&cli.StringFlag{Name: "criu", Usage: "accepted for compatibility; checkpointing is not supported"},
			&cli.StringFlag{Name: "config", Usage: "configuration file (default $COCOON_CONFIG or /etc/cocoon/configuration.toml)"},
		},
		Metadata: map[string]any{logKey: log},
		Before: func(c *cli.Context) error {
			*logToFile = c.String("log") != ""
			return setupLogging(c, log)
		},
		Commands: []*cli.Command{
			checkCommand,
			createCommand,
			deleteCommand,
			envCommand,
			eventsCommand,
			execCommand,
			factoryCommand,
			featuresCommand,
			killCommand,
			listCommand,
			pauseCommand,
			probeCommand,
			psCommand,
			resumeCommand,
			runCommand,
			specCommand,
			startCommand,
			stateCommand,
			updateCommand,
			versionCommand,
		},
		// Errors are reported once, by main, as runc reports them.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

package container

import (
	"os/exec"
	"syscall"

	"github.com/cocoon-containers/cocoon/sandbox"
)

// PoolFill says how to run `cocoon-runtime factory fill`, which makes the
// replacement of a sandbox taken from the pool (hypervisor.template_pool).
type PoolFill struct {
	// Config is the configuration file; empty: cocoon-runtime's default
	// ($COCOON_CONFIG, then /etc/cocoon/configuration.toml).
	Config string
	// LogPath, LogFormat and Debug are cocoon-runtime's --log,
	// --log-format and --debug.
	LogPath, LogFormat string
	Debug              bool
}

// StartPoolFill starts `cocoon-runtime factory fill` for kind in the
// background, in a session of its own, and does not wait for it: it
// outlives the caller, and exits once the pool is full again.
func StartPoolFill(f PoolFill, kind sandbox.PoolKind) error {
	exe, err := sandbox.HelperPath("", "cocoon-runtime")
	if err != nil {
		return err
	}
	var args []string
	if f.Config != "" {
		args = append(args, "--config", f.Config)
	}
	if f.LogPath != "" {
		args = append(args, "--log", f.LogPath)
		if f.LogFormat != "" {
			args = append(args, "--log-format", f.LogFormat)
		}
	}
	if f.Debug {
		args = append(args, "--debug")
	}
	cmd := exec.Command(exe, append(args, "factory", "fill", "--kind", string(kind))...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

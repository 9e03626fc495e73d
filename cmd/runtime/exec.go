package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/oci"
)

var execCommand = &cli.Command{
	Name:      "exec",
	Usage:     "execute new process inside the container",
	ArgsUsage: "<container-id> <command> [command options]  || -p process.json <container-id>",
	Description: `exec starts a process in the container's guest and a cocoon-relay that
relays it. With --detach the relay's PID (written to --pid-file) stands for
the process; without, the runtime waits and exits with its status.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
		&cli.StringFlag{Name: "cwd", Usage: "current working directory in the container"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set environment variables"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-TTY"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID (format: <uid>[:<gid>])"},
		&cli.Int64SliceFlag{Name: "additional-gids", Aliases: []string{"g"}, Usage: "additional gids"},
		&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "path to the process.json"},
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
		&cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
		&cli.StringFlag{Name: "process-label", Usage: "accepted for compatibility; labels do not cross into the VM"},
		&cli.StringFlag{Name: "apparmor", Usage: "accepted for compatibility; profiles do not cross into the VM"},
		&cli.BoolFlag{Name: "no-new-privs", Usage: "set the no new privileges value for the process"},
		&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}, Usage: "add a capability to the bounding set for the process"},
		&cli.UintFlag{Name: "preserve-fds", Usage: "accepted for compatibility; descriptors cannot cross into the VM"},
		&cli.StringFlag{Name: "cgroup", Usage: "accepted for compatibility"},
		&cli.BoolFlag{Name: "ignore-paused", Usage: "allow exec in a paused container"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, false); err != nil {
			return err
		}
		status, err := execProcess(c)
		if err != nil {
			return fmt.Errorf("exec failed: %w", err)
		}
		if status != 0 {
			return cli.Exit("", status)
		}
		return nil
	},
}

// execProcess starts the process and its relay; in the foreground it
// waits and returns the process's exit status.
func execProcess(c *cli.Context) (int, error) {
	_, h, err := openContainer(c)
	if err != nil {
		return 0, err
	}
	locked := true
	defer func() {
		if locked {
			h.Close()
		}
	}()
	p, err := h.Process()
	if err != nil {
		return 0, err
	}
	if p, err = execSpec(c, p); err != nil {
		return 0, err
	}
	detach := c.Bool("detach")
	rp, err := h.Exec(c.Context, p, container.ExecOptions{
		Detach: detach, ConsoleSocket: c.String("console-socket"), PidFile: c.String("pid-file"),
		IgnorePaused: c.Bool("ignore-paused"),
	})
	if err != nil || detach {
		return 0, err
	}
	// The process may run for long: other commands on the container must
	// not wait for it.
	h.Close()
	locked = false
	return rp.WaitForeground(), nil
}

// execSpec builds the exec'd process as runc does: --process, or the
// container's own process (as create read it) with the arguments and flags
// applied.
func execSpec(c *cli.Context, own *specs.Process) (*specs.Process, error) {
	if path := c.String("process"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading process: %w", err)
		}
		return oci.ParseProcess(path, data)
	}
	p := *own
	p.Args = c.Args().Tail()
	if len(p.Args) == 0 {
		return nil, errors.New("exec args cannot be empty")
	}
	p.Env = append(append([]string{}, p.Env...), c.StringSlice("env")...)
	p.Terminal = c.Bool("tty")
	if cwd := c.String("cwd"); cwd != "" {
		p.Cwd = cwd
	}
	if u := c.String("user"); u != "" {
		uid, gid, hasGID := strings.Cut(u, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parsing %s as user: %w", u, err)
		}
		p.User.UID = uint32(n)
		if hasGID {
			g, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parsing %s as user: %w", u, err)
			}
			p.User.GID = uint32(g)
		}
	}
	for _, g := range c.Int64Slice("additional-gids") {
		if g < 0 {
			return nil, fmt.Errorf("additional-gids must be positive: %d", g)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(g))
	}
	if caps := c.StringSlice("cap"); len(caps) > 0 {
		pc := specs.LinuxCapabilities{}
		if p.Capabilities != nil {
			pc = *p.Capabilities
		}
		for _, cp := range caps {
			pc.Bounding = append(pc.Bounding, cp)
			pc.Effective = append(pc.Effective, cp)
			pc.Permitted = append(pc.Permitted, cp)
			pc.Ambient = append(pc.Ambient, cp)
		}
		p.Capabilities = &pc
	}
	if c.IsSet("no-new-privs") {
		p.NoNewPrivileges = c.Bool("no-new-privs")
	}
	return &p, nil
}

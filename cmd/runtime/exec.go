package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/oci"
)

var execCommand = &cli.Command{
	Name:      "exec",
	Usage:     "execute new process inside the container",
	ArgsUsage: "<container-id> <command> [command options]  || -p process.json <container-id>",
	Description: `exec starts a process in the container's guest and a cocoon-shim that
relays it. With --detach the shim's PID (written to --pid-file) stands for
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

// execProcess starts the process and its shim; in the foreground it waits
// and returns the process's exit status.
func execProcess(c *cli.Context) (int, error) {
	oc, err := open(c.Context, c)
	if err != nil {
		return 0, err
	}
	locked := true
	defer func() {
		if locked {
			oc.close()
		}
	}()
	rec := oc.rec
	status := rec.CurrentStatus()
	if !(status == container.Paused && c.Bool("ignore-paused")) {
		if err := container.CheckOp(container.OpExec, rec.ID, status); err != nil {
			return 0, err
		}
	}
	if oc.sb == nil {
		return 0, errSandboxGone
	}
	p, err := execSpec(c, rec)
	if err != nil {
		return 0, err
	}
	detach := c.Bool("detach")
	mode, err := newStdioMode(p.Terminal, c.String("console-socket"), detach)
	if err != nil {
		return 0, err
	}
	setConsoleSize(p, mode)
	gp, err := oci.GuestProcess(p)
	if err != nil {
		return 0, err
	}
	data, err := json.Marshal(gp)
	if err != nil {
		return 0, err
	}
	execID, err := newExecID()
	if err != nil {
		return 0, err
	}
	ctx, cancel := withTimeout(c.Context, oc.m)
	defer cancel()
	ag, err := oc.sb.Client(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := ag.ExecProcess(ctx, &api.ExecProcessRequest{
		ContainerId: rec.ID, ExecId: execID, ProcessJson: data, Stdio: mode.stdioConfig(),
	}); err != nil {
		return 0, err
	}
	sp, err := startShim(ctx, c, oc.m, shimOptions{sb: oc.sb, containerID: rec.ID, execID: execID, mode: mode})
	if err != nil {
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), scaled(oc.m, 2*time.Second))
		defer kcancel()
		_, _ = ag.SignalProcess(kctx, &api.SignalProcessRequest{ContainerId: rec.ID, ExecId: execID, Signal: uint32(unix.SIGKILL)})
		return 0, err
	}
	if f := c.String("pid-file"); f != "" {
		if err := writePidFile(f, sp.pid); err != nil {
			sp.kill()
			return 0, err
		}
	}
	if detach {
		return 0, nil
	}
	// The process may run for long: other commands on the container must
	// not wait for it.
	oc.close()
	locked = false
	return waitForeground(sp), nil
}

// newExecID returns a random exec ID.
func newExecID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("choosing an exec id: %w", err)
	}
	return "exec-" + hex.EncodeToString(b[:]), nil
}

// execSpec builds the exec'd process as runc does: --process, or the
// container's own process with the arguments and flags applied.
func execSpec(c *cli.Context, rec *container.Record) (*specs.Process, error) {
	if path := c.String("process"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading process: %w", err)
		}
		return oci.ParseProcess(path, data)
	}
	b, err := oci.LoadBundle(rec.Bundle)
	if err != nil {
		return nil, err
	}
	p := *b.Spec.Process
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

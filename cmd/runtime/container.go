package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/hooks"
	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// containerStore returns the state store under --root.
func containerStore(c *cli.Context) *container.RecordStore {
	return &container.RecordStore{Root: c.String("root")}
}

// containerID returns the command's first argument, the container ID.
func containerID(c *cli.Context) (string, error) {
	id := c.Args().First()
	if id == "" {
		return "", errors.New("container id cannot be empty")
	}
	if err := statedir.ValidateID(id); err != nil {
		return "", fmt.Errorf("invalid container id: %w", err)
	}
	return id, nil
}

// checkArgs checks the number of arguments as runc does.
func checkArgs(c *cli.Context, n int, exact bool) error {
	switch {
	case exact && c.NArg() != n:
		return fmt.Errorf("%s: %q requires exactly %d argument(s)", os.Args[0], c.Command.Name, n)
	case !exact && c.NArg() < n:
		return fmt.Errorf("%s: %q requires a minimum of %d argument(s)", os.Args[0], c.Command.Name, n)
	}
	return nil
}

// createOptions are create's (and run's) flags.
type createOptions struct {
	id            string
	bundle        string
	pidFile       string
	consoleSocket string
	detach        bool
}

func createOptionsFrom(c *cli.Context, detach bool) (createOptions, error) {
	if err := checkArgs(c, 1, true); err != nil {
		return createOptions{}, err
	}
	id, err := containerID(c)
	if err != nil {
		return createOptions{}, err
	}
	return createOptions{
		id:            id,
		bundle:        c.String("bundle"),
		pidFile:       c.String("pid-file"),
		consoleSocket: c.String("console-socket"),
		detach:        detach,
	}, nil
}

// undoStack runs its functions in reverse unless disarmed.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }
func (u *undoStack) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
	*u = nil
}

// createContainer is runc create: it validates the bundle, creates or
// joins the sandbox, creates the container in the guest, starts its shim,
// runs the prestart, createRuntime and createContainer hooks, writes the
// pid file and records the container as created. On failure everything it
// did is undone.
func createContainer(ctx context.Context, c *cli.Context, o createOptions) (_ *container.Record, _ *shimProcess, retErr error) {
	bundle := o.bundle
	if bundle == "" {
		bundle = "."
	}
	b, err := oci.LoadBundle(bundle)
	if err != nil {
		return nil, nil, err
	}
	mode, err := newStdioMode(b.Spec.Process.Terminal, o.consoleSocket, o.detach)
	if err != nil {
		return nil, nil, err
	}
	setConsoleSize(b.Spec.Process, mode)
	sbID, owns, err := sandboxFor(o.id, b.Spec.Annotations)
	if err != nil {
		return nil, nil, err
	}
	// The pod's hostname, before a pod member's UTS namespace (and with
	// it the hostname) is found to be the guest's.
	attach := sandbox.AttachConfig{Hostname: b.Spec.Hostname}
	if podMember(b.Spec.Annotations) {
		attach.Sysctls = podNamespaces(b.Spec)
	}
	m, err := newManager(c)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, scaled(m, m.Config.Agent.BootTimeout.Duration+20*time.Second))
	defer cancel()
	// Cleanups get a deadline of their own: ctx may be what failed.
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), scaled(m, 5*time.Second))
	}

	st := containerStore(c)
	rec := &container.Record{
		ID:          o.id,
		Bundle:      b.Dir,
		Rootfs:      b.Rootfs,
		Status:      container.Creating,
		Created:     time.Now().UTC(),
		Annotations: b.Spec.Annotations,
		SandboxID:   sbID,
		SandboxRoot: m.Root,
		OwnsSandbox: owns,
	}
	lock, err := st.Create(rec)
	if err != nil {
		return nil, nil, err
	}
	defer lock.Unlock()
	var undo undoStack
	defer func() {
		if retErr != nil {
			undo.run()
		}
	}()
	undo.push(func() {
		if err := st.Remove(o.id); err != nil {
			m.Log.WithError(err).Warn("cleaning up a failed create")
		}
	})

	var sb *sandbox.Sandbox
	if !owns {
		sb, err = m.Load(ctx, sbID)
		switch {
		case errors.Is(err, sandbox.ErrNotFound) && infraMayBeDropped(b.Spec.Annotations):
			// CRI-O runs the pod without an infra container: its
			// first container boots the pod's VM, the others join.
			owns, sb = true, nil
			rec.OwnsSandbox = true
		case err != nil:
			return nil, nil, fmt.Errorf("joining the pod's sandbox: %w", err)
		}
	}
	if owns {
		undo.push(func() { removeEmptyRoot(m.Root) })
		sb, err = m.Create(ctx, sbID, sandbox.WithNetwork(sandbox.NetworkOf(b.Spec)))
		if err != nil {
			return nil, nil, err
		}
		undo.push(func() {
			cctx, cancel := cleanupCtx()
			defer cancel()
			if err := sb.Destroy(cctx); err != nil {
				m.Log.WithError(err).Warn("cleaning up a failed create")
			}
		})
		if err := sb.Attach(ctx, attach); err != nil {
			return nil, nil, err
		}
	} else {
		sbLock, err := sb.Lock()
		if err != nil {
			return nil, nil, fmt.Errorf("joining the pod's sandbox: %w", err)
		}
		defer sbLock.Unlock()
	}
	defer sb.Close()

	if _, err := sb.CreateContainer(ctx, o.id, b, mode.stdioConfig()); err != nil {
		return nil, nil, err
	}
	var sp *shimProcess
	undo.push(func() {
		// The process goes first: its shim then exits by itself, and
		// the shim's guard stays quiet (a killed shim's guard would
		// kill the process too, racing the removal).
		cctx, cancel := cleanupCtx()
		defer cancel()
		if err := sb.RemoveContainer(cctx, o.id, true); err != nil {
			m.Log.WithError(err).Warn("cleaning up a failed create")
		}
		sp.stop(scaled(m, 500*time.Millisecond))
	})
	sp, err = startShim(ctx, c, m, shimOptions{
		sb: sb, containerID: o.id, mode: mode, newNetNS: wantsNewNetNS(b.Spec), netNS: sb.NetNS(),
	})
	if err != nil {
		return nil, nil, err
	}
	rec.Pid, rec.PidStart = sp.pid, sp.start

	hs := hookState(rec, specs.StateCreating)
	for _, k := range []hooks.Kind{hooks.Prestart, hooks.CreateRuntime, hooks.CreateContainer} {
		if err := hooks.Run(ctx, k, hooks.Of(b.Spec.Hooks, k), hs); err != nil {
			return nil, nil, err
		}
	}
	// The hooks (Docker's libnetwork-setkey) have filled the namespace.
	if err := sb.ConnectNetwork(ctx); err != nil {
		return nil, nil, err
	}
	if o.pidFile != "" {
		if err := writePidFile(o.pidFile, sp.pid); err != nil {
			return nil, nil, err
		}
	}
	rec.Status = container.Created
	if err := st.Save(rec); err != nil {
		return nil, nil, err
	}
	return rec, sp, nil
}

// wantsNewNetNS tells whether the spec asks for a new network namespace
// (rather than the host's, or one the caller made).
func wantsNewNetNS(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// hookState is the state hooks get on stdin.
func hookState(rec *container.Record, status specs.ContainerState) *specs.State {
	return &specs.State{
		Version:     specs.Version,
		ID:          rec.ID,
		Status:      status,
		Pid:         rec.Pid,
		Bundle:      rec.Bundle,
		Annotations: rec.Annotations,
	}
}

// bundleHooks reads the hooks of a container's bundle again (the
// runtime keeps no copy of the spec).
func bundleHooks(rec *container.Record) (*specs.Hooks, error) {
	b, err := oci.LoadBundle(rec.Bundle)
	if err != nil {
		return nil, err
	}
	return b.Spec.Hooks, nil
}

// writePidFile writes pid to path atomically, as runc does: a temporary
// file next to it, renamed.
func writePidFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_SYNC, 0o666)
	if err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	f.Close()
	if err == nil {
		err = os.Rename(tmp, abs)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing pid file: %w", err)
	}
	return nil
}

// openContainer locks container id and loads its sandbox (nil when the
// sandbox is gone). The caller unlocks and closes.
type openContainer struct {
	st   *container.RecordStore
	rec  *container.Record
	lock *statedir.Lock
	m    *sandbox.Manager
	sb   *sandbox.Sandbox
}

func (oc *openContainer) close() {
	if oc.sb != nil {
		oc.sb.Close()
	}
	oc.lock.Unlock()
}

// open locks the container named by the first argument and finds its
// sandbox.
func open(ctx context.Context, c *cli.Context) (*openContainer, error) {
	id, err := containerID(c)
	if err != nil {
		return nil, err
	}
	st := containerStore(c)
	rec, lock, err := st.Lock(id)
	if err != nil {
		return nil, err
	}
	oc := &openContainer{st: st, rec: rec, lock: lock}
	if oc.m, err = newManagerAt(c, rec.SandboxRoot); err != nil {
		lock.Unlock()
		return nil, err
	}
	if oc.sb, err = loadSandbox(ctx, oc.m, rec.SandboxID); err != nil {
		lock.Unlock()
		return nil, err
	}
	return oc, nil
}

// errSandboxGone is returned for operations on a container whose sandbox
// no longer exists.
var errSandboxGone = errors.New("the container's sandbox is gone")

// destroyContainer is runc delete once the status allows it: it removes
// the container from the guest (killing it), lets its shim exit, runs the
// poststop hooks, destroys the sandbox when no other container uses it, and
// removes the record. The caller holds the container's lock.
func destroyContainer(ctx context.Context, oc *openContainer) error {
	rec, m, sb := oc.rec, oc.m, oc.sb
	if sb != nil {
		sbLock, err := sb.Lock()
		if err != nil {
			return err
		}
		defer sbLock.Unlock()
		if err := sb.RemoveContainer(ctx, rec.ID, true); err != nil {
			m.Log.WithError(err).Warn("removing the container from its sandbox")
		}
	}
	stopShim(ctx, rec.Pid, rec.PidStart, scaled(m, 500*time.Millisecond))
	if rec.Status != container.Creating {
		if hs, err := bundleHooks(rec); err == nil {
			if err := hooks.Run(ctx, hooks.Poststop, hooks.Of(hs, hooks.Poststop), hookState(rec, specs.StateStopped)); err != nil {
				m.Log.WithError(err).Warn("poststop hooks")
			}
		}
	}
	st := oc.st
	if sb != nil && !otherMembers(st, rec) {
		if err := sb.Destroy(ctx); err != nil {
			return err
		}
		oc.sb = nil
		removeEmptyRoot(m.Root)
	}
	return st.Remove(rec.ID)
}

// otherMembers tells whether another container of the root uses rec's
// sandbox.
func otherMembers(st *container.RecordStore, rec *container.Record) bool {
	all, _ := st.List()
	for _, o := range all {
		if o.ID != rec.ID && o.SandboxID == rec.SandboxID && o.SandboxRoot == rec.SandboxRoot {
			return true
		}
	}
	return false
}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// vmRootBase holds the sandboxes' directories, one subdirectory per
// runtime root: <vmRootBase>/<hash of --root>/<sandbox-id>/. It is not
// <root>/sandboxes, since "sandboxes" is a valid container ID, and it is
// short, since QEMU's and the proxy's unix sockets live in a sandbox's
// directory and a socket path must stay under 108 bytes: with 64-character
// sandbox IDs (Docker's) the longest is
// /run/cocoon/.vm/01234567/<64>/proxy.sock, 100 bytes. Its name starts with
// a dot, which no container ID does, so that it can share the default root
// /run/cocoon with container directories.
const vmRootBase = sandbox.DefaultRoot

// maxSandboxIDLen keeps sandbox directories short (see vmRootBase); longer
// IDs are hashed.
const maxSandboxIDLen = 64

// sandboxRoot returns the sandbox manager's root for runtime root root.
func sandboxRoot(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	sum := sha256.Sum256([]byte(filepath.Clean(abs)))
	return filepath.Join(vmRootBase, hex.EncodeToString(sum[:4]))
}

// sandboxIDFor returns the sandbox ID of a container or pod ID: itself
// when short enough, else a hash of it.
func sandboxIDFor(id string) string {
	if len(id) <= maxSandboxIDLen {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// newManager loads the configuration and resolves the accelerator; its
// sandboxes live under sandboxRoot(--root).
func newManager(c *cli.Context) (*sandbox.Manager, error) {
	return newManagerAt(c, sandboxRoot(c.String("root")))
}

// newManagerAt is newManager with an explicit sandbox root: the one a
// container's record names.
func newManagerAt(c *cli.Context, root string) (*sandbox.Manager, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	return sandbox.NewManager(cfg, root)
}

// loadConfig loads the configuration that --config names (or the
// default); an explicit path is made absolute first, so that the relative
// paths in the file resolve against its directory.
func loadConfig(c *cli.Context) (*config.Config, error) {
	path := config.Path(c.String("config"))
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if !c.Bool("debug") {
		logrus.SetLevel(cfg.Runtime.Level())
	}
	return cfg, nil
}

// scaled multiplies d by the accelerator's slowdown.
func scaled(m *sandbox.Manager, d time.Duration) time.Duration {
	return d * m.Accelerator.TimeoutScale()
}

// withTimeout bounds a command's work on existing containers.
func withTimeout(ctx context.Context, m *sandbox.Manager) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, scaled(m, 10*time.Second))
}

// loadSandbox finds the sandbox of a container's record; nil without an
// error when it is gone.
func loadSandbox(ctx context.Context, m *sandbox.Manager, id string) (*sandbox.Sandbox, error) {
	sb, err := m.Load(ctx, id)
	if errors.Is(err, sandbox.ErrNotFound) {
		return nil, nil
	}
	return sb, err
}

// removeEmptyRoot removes a sandbox root with nothing left in it, and the
// base above it if that is empty too.
func removeEmptyRoot(root string) {
	if os.Remove(root) == nil {
		_ = os.Remove(filepath.Dir(root))
	}
}

// sandboxAddress returns the shim's flags that reach the agent of sb.
func sandboxAddress(sb *sandbox.Sandbox) []string {
	sock, cid := sb.ShimAddress()
	if sock == "" {
		return []string{"--vsock", fmt.Sprint(cid)}
	}
	return []string{"--proxy-socket", sock}
}

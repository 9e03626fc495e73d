package container

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"

	"github.com/cocoon-containers/cocoon/sandbox"
)

// MaxSandboxIDLen keeps sandbox directories short: QEMU's and the proxy's
// unix sockets live in a sandbox's directory and a socket path must stay
// under 108 bytes. Longer IDs are hashed.
const MaxSandboxIDLen = 64

// SandboxIDFor returns the sandbox ID of a container or pod ID: itself
// when short enough, else a hash of it.
func SandboxIDFor(id string) string {
	if len(id) <= MaxSandboxIDLen {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// RuntimeSandboxRoot returns where cocoon-runtime keeps the sandboxes of
// runtime root root (runc's --root): one directory per root under
// sandbox.DefaultRoot, named by a hash of it. It is not <root>/sandboxes,
// since "sandboxes" is a valid container ID, and it is short (see
// MaxSandboxIDLen): with 64-character sandbox IDs (Docker's) the longest
// socket is /run/cocoon/.vm/01234567/<64>/proxy.sock, 100 bytes.
func RuntimeSandboxRoot(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	sum := sha256.Sum256([]byte(filepath.Clean(abs)))
	return filepath.Join(sandbox.DefaultRoot, hex.EncodeToString(sum[:4]))
}

// ContainerdSandboxRoot returns where the containerd shim keeps the
// sandboxes whose containers' bundles are in bundles (containerd's
// <state>/io.containerd.runtime.v2.task/<namespace>): container IDs are
// unique within one containerd namespace only.
func ContainerdSandboxRoot(bundles string) string {
	sum := sha256.Sum256([]byte("containerd:" + filepath.Clean(bundles)))
	return filepath.Join(sandbox.DefaultRoot, hex.EncodeToString(sum[:4]))
}

// RemoveEmptyRoot removes a sandbox root with nothing left in it, and the
// base above it if that is empty too.
func RemoveEmptyRoot(root string) {
	if os.Remove(root) == nil {
		_ = os.Remove(filepath.Dir(root))
	}
}

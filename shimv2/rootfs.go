package shimv2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/container"
)

// task is containerd's task of one container, as the shim keeps it: the
// container, its processes (init and exec'd, with their FIFOs and status),
// and its bundle and rootfs mount.
type task struct {
	ctr    *container.Container
	bundle string
	// rootfs is where Create mounted containerd's rootfs mounts; empty when
	// there were none.
	rootfs string
	init   *process
	execs  map[string]*process
}

// mountRootfs mounts containerd's rootfs mounts (a snapshot) on the
// bundle's rootfs directory, as containerd-shim-runc-v2 does; it returns
// the directory, or "" when there is nothing to mount (the bundle brings
// its root file system).
func mountRootfs(bundle string, mounts []*types.Mount) (string, error) {
	if len(mounts) == 0 {
		return "", nil
	}
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.Mkdir(rootfs, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("creating rootfs directory: %w", err)
	}
	ms := make([]mount.Mount, 0, len(mounts))
	for _, m := range mounts {
		ms = append(ms, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if err := mount.All(ms, rootfs); err != nil {
		return "", fmt.Errorf("mounting rootfs: %w", err)
	}
	return rootfs, nil
}

// unmountRootfs undoes mountRootfs (every mount stacked on dir).
func unmountRootfs(dir string) error {
	if dir == "" {
		return nil
	}
	if err := mount.UnmountAll(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting rootfs: %w", err)
	}
	return nil
}

package shimv2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"golang.org/x/sys/unix"
)

// CRI annotations by which containerd says that a container belongs to a
// pod.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	containerTypeSandbox    = "sandbox"
	containerTypeContainer  = "container"
)

// container is one task: its init process and its exec'd processes.
type container struct {
	id     string
	bundle string
	// rootfs is where Create mounted containerd's rootfs mounts; empty when
	// there were none.
	rootfs string
	// guestPid is the init process's PID in the guest.
	guestPid int
	init     *process
	execs    map[string]*process
}

// podOf tells which pod (sandbox) a container belongs to, from its CRI
// annotations: a pod's sandbox container creates the pod's VM (owns), its
// other containers join it. A container without them is a pod of its own.
func podOf(id string, annotations map[string]string) (sandboxID string, owns bool, err error) {
	typ, ok := annotations[annotationContainerType]
	if !ok {
		return sandboxIDFor(id), true, nil
	}
	switch typ {
	case containerTypeSandbox:
		return sandboxIDFor(id), true, nil
	case containerTypeContainer:
		pod := annotations[annotationSandboxID]
		if pod == "" {
			return "", false, fmt.Errorf("annotation %s=%s without %s: %w", annotationContainerType, typ, annotationSandboxID, errdefs.ErrInvalidArgument)
		}
		return sandboxIDFor(pod), pod == id, nil
	}
	return "", false, fmt.Errorf("annotation %s: unknown container type %q: %w", annotationContainerType, typ, errdefs.ErrInvalidArgument)
}

// groupOf is the ID that shares a shim: the pod's sandbox ID, or the
// container's own.
func groupOf(id string, annotations map[string]string) string {
	if pod := annotations[annotationSandboxID]; pod != "" {
		return pod
	}
	return id
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

package shimv2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/protobuf"
	"github.com/containerd/containerd/runtime/v2/shim"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/oci"
)

// StartShim is the shim's start command, run in the bundle directory: it
// returns the address of the shim that serves the container, starting one
// unless the container's pod already has one (grouped by the CRI sandbox
// ID annotation, as containerd-shim-runc-v2 groups).
func (s *Service) StartShim(ctx context.Context, opts shim.StartOpts) (_ string, retErr error) {
	b, err := oci.LoadBundle(".")
	if err != nil {
		return "", err
	}
	address, err := shim.SocketAddress(ctx, opts.Address, container.GroupOf(opts.ID, b.Spec.Annotations))
	if err != nil {
		return "", err
	}
	socket, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return "", fmt.Errorf("creating shim socket: %w", err)
		}
		if shim.CanConnect(address) {
			// The pod's shim is running: the container joins it.
			if err := shim.WriteAddress("address", address); err != nil {
				return "", err
			}
			return address, nil
		}
		if err := shim.RemoveSocket(address); err != nil {
			return "", fmt.Errorf("removing stale shim socket: %w", err)
		}
		if socket, err = shim.NewSocket(address); err != nil {
			return "", fmt.Errorf("creating shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			_ = shim.RemoveSocket(address)
		}
	}()
	if err := shim.WriteAddress("address", address); err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	args := []string{"-id", opts.ID}
	if opts.Debug {
		args = append(args, "-debug")
	}
	cmd, err := shim.Command(ctx, &shim.CommandConfig{
		Runtime:      self,
		Address:      opts.Address,
		TTRPCAddress: opts.TTRPCAddress,
		Path:         cwd,
		Args:         args,
	})
	if err != nil {
		return "", err
	}
	f, err := socket.File()
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting shim: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return address, nil
}

// Cleanup is the shim's delete command, run in the bundle directory when
// the shim is gone (or its start failed): it removes what the container
// left: the VM when the container owned it (else the container from its
// pod's VM) and the rootfs mount.
func (s *Service) Cleanup(ctx context.Context) (*taskAPI.DeleteResponse, error) {
	resp := &taskAPI.DeleteResponse{ExitStatus: 128 + uint32(unix.SIGKILL), ExitedAt: protobuf.ToTimestamp(time.Now())}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	l := log.G(ctx).WithField("id", s.id)
	var errs []error
	if address, err := shim.ReadAddress(filepath.Join(cwd, "address")); err == nil && shim.CanConnect(address) {
		// The pod's shim is alive (this container's task was deleted through
		// it, or its connection dropped): the VM is its to manage.
		l.Debug("the pod's shim still serves: leaving its sandbox")
	} else if b, err := oci.LoadBundle(cwd); err != nil {
		l.WithError(err).Warn("reading the bundle")
	} else if err := cleanupSandbox(ctx, s.id, b.Spec.Annotations); err != nil {
		errs = append(errs, err)
	}
	if err := unmountRootfs(filepath.Join(cwd, "rootfs")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return resp, nil
}

// cleanupSandbox removes what container id left in its sandbox, by the
// container layer's rule for a container whose shim is gone.
func cleanupSandbox(ctx context.Context, id string, annotations map[string]string) error {
	pod, err := container.PodOf(id, annotations)
	if err != nil {
		return err
	}
	m, err := managerFor(ctx, "")
	if err != nil {
		return err
	}
	return container.Cleanup(ctx, m, id, pod)
}

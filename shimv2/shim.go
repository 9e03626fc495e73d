package shimv2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/oci"
)

// Manager is the shim binary's side of containerd's shim protocol
// (shim.Shim): the start and delete commands and runtime introspection
// (-info). The task service that the started shim serves is Service,
// registered as the shim's TTRPC plugin (RegisterTaskService).
type Manager struct {
	// Version is the shim's version, given back by -info.
	Version string
}

var _ shim.Shim = Manager{}

// Name is the runtime type.
func (Manager) Name() string { return RuntimeName }

// Start is the start command of containerd 2.3 and later (the bootstrap
// protocol); RunLegacyStart answers older ones.
func (Manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (*bootapi.BootstrapResult, error) {
	debug := params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG
	address, err := startShim(ctx, params.GetInstanceID(), params.GetContainerdGrpcAddress(),
		params.GetContainerdTtrpcAddress(), params.GetSocketDir(), debug)
	if err != nil {
		return nil, err
	}
	return &bootapi.BootstrapResult{Version: 2, Address: address, Protocol: "ttrpc"}, nil
}

// Stop is the delete command: see cleanup.
func (Manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	if err := cleanup(ctx, id); err != nil {
		return shim.StopStatus{}, err
	}
	return shim.StopStatus{ExitStatus: 128 + int(unix.SIGKILL), ExitedAt: time.Now()}, nil
}

// Info answers -info: see Info.
func (m Manager) Info(ctx context.Context, options io.Reader) (*apitypes.RuntimeInfo, error) {
	return Info(ctx, options, m.Version)
}

// startShim is the shim's start command, run in the bundle directory of
// container id: it returns the address of the shim that serves the
// container, starting one unless the container's pod already has one
// (grouped by the CRI sandbox ID annotation, as containerd-shim-runc-v2
// groups). The socket is under socketDir, or containerd's default when "".
func startShim(ctx context.Context, id, grpcAddress, ttrpcAddress, socketDir string, debug bool) (_ string, retErr error) {
	b, err := oci.LoadBundle(".")
	if err != nil {
		return "", err
	}
	group := container.GroupOf(id, b.Spec.Annotations)
	var address string
	if socketDir != "" {
		address, err = shim.CreateSocketAddress(ctx, socketDir, grpcAddress, group, false)
	} else {
		address, err = shim.SocketAddress(ctx, grpcAddress, group, false)
	}
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
			if err := writeAddress(address); err != nil {
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
	if err := writeAddress(address); err != nil {
		return "", err
	}
	cmd, err := shimCommand(ctx, id, grpcAddress, ttrpcAddress, debug)
	if err != nil {
		return "", err
	}
	f, err := socket.File()
	if err != nil {
		return "", err
	}
	defer f.Close()
	// The socket is the served shim's descriptor 3, where the shim
	// library looks for it.
	cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting shim: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return address, nil
}

// shimCommand is the command of the shim that serves container id: this
// binary again, in the bundle directory, in a process group of its own (a
// signal to containerd's group does not reach it), with the addresses of
// containerd in its flags and environment as containerd gives them to the
// start command.
func shimCommand(ctx context.Context, id, grpcAddress, ttrpcAddress string, debug bool) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-address", grpcAddress, "-id", id}
	if debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2", ttrpcAddressEnv+"="+ttrpcAddress)
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// writeAddress writes the shim's address to the file "address" in the
// bundle directory (atomically), where cleanup and the shim library's
// socket cleanup read it.
func writeAddress(address string) error {
	tmp := ".address.tmp"
	if err := os.WriteFile(tmp, []byte(address), 0o600); err != nil {
		return fmt.Errorf("writing the shim address: %w", err)
	}
	if err := os.Rename(tmp, "address"); err != nil {
		return fmt.Errorf("writing the shim address: %w", err)
	}
	return nil
}

// cleanup is the shim's delete command, run in the bundle directory of
// container id when the shim is gone (or its start failed): it removes
// what the container left: the VM when the container owned it (else the
// container from its pod's VM) and the rootfs mount.
func cleanup(ctx context.Context, id string) error {
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	l := log.G(ctx).WithField("id", id)
	var errs []error
	if address, err := shim.ReadAddress(filepath.Join(cwd, "address")); err == nil && shim.CanConnect(address) {
		// The pod's shim is alive (this container's task was deleted through
		// it, or its connection dropped): the VM is its to manage.
		l.Debug("the pod's shim still serves: leaving its sandbox")
	} else if b, err := oci.LoadBundle(cwd); err != nil {
		l.WithError(err).Warn("reading the bundle")
	} else if err := cleanupSandbox(ctx, id, b.Spec.Annotations); err != nil {
		errs = append(errs, err)
	}
	if err := unmountRootfs(filepath.Join(cwd, "rootfs")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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

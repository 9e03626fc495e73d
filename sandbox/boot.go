package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/internal/proc"
)

// vhostVsockDevice exists where the host can give guests a vsock device.
const vhostVsockDevice = "/dev/vhost-vsock"

// transport resolves the configured agent transport.
func (m *Manager) transport() string { return ResolveTransport(m.Config.Agent.Transport) }

// ResolveTransport resolves a configured agent transport ("auto", "serial"
// or "vsock") as sandboxes do: auto is vsock where /dev/vhost-vsock
// exists, else serial (virtio-serial through cocoon-proxy).
func ResolveTransport(configured string) string {
	switch configured {
	case api.TransportSerial, api.TransportVsock:
		return configured
	}
	if _, err := os.Stat(vhostVsockDevice); err == nil {
		return api.TransportVsock
	}
	return api.TransportSerial
}

// AgentAPIVersion is the version of the agent protocol this host speaks.
const AgentAPIVersion = api.APIVersion

// boot is the container-independent phase: VM, proxy, agent ready.
// nics are the guest's network interfaces. With a factory, the VM is
// restored from the image it gives when it can be, and booted when not.
func (s *Sandbox) boot(ctx context.Context, nics []hypervisor.NIC) error {
	m := s.m
	h := m.Config.Hypervisor
	cfg := m.VMConfig(s.state.ID, s.dir, s.SharedDir(), nics)
	cfg.ConsoleLog = s.ConsoleLog()
	cfg.Cgroup = s.placer()
	size := s.GuestSize()
	cfg.VCPUs, cfg.MemoryMiB = size.VCPUs, size.MemoryMiB
	if s.state.Transport == api.TransportVsock {
		cid, err := randomCID()
		if err != nil {
			return err
		}
		s.state.VsockCID = cid
		cfg.VsockCID = cid
		cfg.KernelParams = append(cfg.KernelParams, api.KernelParamTransport+"="+api.TransportVsock)
	} else {
		cfg.AgentSocket = filepath.Join(s.dir, agentSocket)
	}
	for _, f := range []string{h.Kernel, h.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("guest image: %w", err)
		}
	}
	if s.virtioFS() {
		// The daemon listens before QEMU starts, which connects to it.
		if err := s.startVirtiofsd(ctx); err != nil {
			return err
		}
		cfg.SharedDirs[0].Socket = s.virtiofsdSocketPath()
	}
	if s.image != nil {
		// Booted to be saved (AsImage). The memory file is made here, root's
		// alone: QEMU may only write the files that exist when it starts
		// outside its directory.
		f, err := os.OpenFile(s.image.MemoryFile, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("guest image: %w", err)
		}
		f.Close()
		cfg.Template = s.image
		return s.start(ctx, cfg)
	}
	if f := m.Factory; f != nil {
		if img := f.Image(ctx, m, cfg); img != nil {
			err := s.restore(ctx, cfg, img)
			if err == nil {
				return nil
			}
			m.Log.WithError(err).WithFields(logrus.Fields{"sandbox": s.state.ID, "image": img.Dir}).Warn("restoring the sandbox from its template failed, booting it cold; the template is dropped")
			s.undoStart(ctx)
			f.Failed(m, img, err)
		}
	}
	return s.start(ctx, cfg)
}

// VMConfig is the VM of a sandbox in dir, sharing sharedDir, with the
// configured size and kernel parameters, before its agent channel is
// chosen: what a factory's images are made of and keyed by.
func (m *Manager) VMConfig(id, dir, sharedDir string, nics []hypervisor.NIC) hypervisor.VMConfig {
	h := m.Config.Hypervisor
	params := append([]string{}, h.KernelParams...)
	params = append(params, api.KernelParamLogLevel+"="+m.Config.Agent.LogLevel)
	return hypervisor.VMConfig{
		ID:           id,
		Dir:          dir,
		Binary:       h.Path,
		Machine:      h.Machine,
		Accelerator:  m.Accelerator,
		VCPUs:        h.VCPUs,
		MemoryMiB:    h.MemoryMiB,
		Kernel:       h.Kernel,
		Initrd:       h.Initrd,
		SharedDirs:   []hypervisor.SharedDir{{Tag: ShareTag, HostPath: sharedDir}},
		Debug:        h.Debug,
		KernelParams: params,
		NICs:         nics,
	}
}

// start starts the VM of cfg and its proxy, and waits for the agent.
func (s *Sandbox) start(ctx context.Context, cfg hypervisor.VMConfig) error {
	m := s.m
	cfg.MountNamespace = s.mntns
	vm, err := m.Hypervisor.Start(ctx, cfg)
	if err != nil {
		return err
	}
	s.vm = vm
	s.state.VM = vm.State()
	if err := s.save(); err != nil {
		return err
	}
	if s.state.Transport == api.TransportSerial && m.AgentDialer == nil {
		pid, err := m.startProxy(s.dir, s.startPlaced)
		if err != nil {
			return err
		}
		s.state.ProxyPID = pid
		if err := s.save(); err != nil {
			return err
		}
	}
	c, err := agentclient.WaitReady(ctx, s.dialer(), s.clientOptions())
	if err != nil {
		return err
	}
	// The connection that saw the agent ready serves what follows
	// (attach, the first container): one connection per sandbox user.
	s.connected(c)
	return nil
}

// undoStart stops what a failed start left running (VM, proxy), so that
// the sandbox can boot again in its directory.
func (s *Sandbox) undoStart(ctx context.Context) {
	if err := s.Close(); err != nil {
		s.m.Log.WithError(err).Debug("closing the agent connection")
	}
	if s.vm != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.Scaled(stopGrace))
		if err := s.vm.Stop(sctx); err != nil {
			s.m.Log.WithError(err).Warn("stopping the vm of a failed restore")
		}
		cancel()
		s.vm = nil
		s.state.VM = hypervisor.State{}
	}
	if pid := s.state.ProxyPID; pid > 0 {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.Scaled(stopGrace))
		if err := proc.Terminate(pctx, pid); err != nil {
			s.m.Log.WithError(err).Warn("stopping the proxy of a failed restore")
		}
		cancel()
		s.state.ProxyPID = 0
	}
	if err := s.save(); err != nil {
		s.m.Log.WithError(err).Warn("saving the state of a failed restore")
	}
}

// startProxy starts cocoon-proxy for the VM in dir, detached, with start
// (a sandbox's startPlaced: in its host cgroup): it outlives this process
// and exits by itself when QEMU closes the agent socket.
func (m *Manager) startProxy(dir string, start func(*exec.Cmd) error) (int, error) {
	path, err := m.proxyPath()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(path,
		"--agent-socket", filepath.Join(dir, agentSocket),
		"--listen", filepath.Join(dir, proxySocket),
		"--log", filepath.Join(dir, proxyLog),
	)
	// Own session, no inherited descriptors beyond /dev/null stdio.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := start(cmd); err != nil {
		return 0, fmt.Errorf("starting proxy: %w", err)
	}
	pid := cmd.Process.Pid
	// Reap it if it exits while this process still runs; otherwise it is
	// reparented and reaped by init or the caller's subreaper.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

func (m *Manager) proxyPath() (string, error) {
	if p := m.Config.Runtime.ProxyPath; p != "" {
		return p, nil
	}
	return HelperPath("", "cocoon-proxy")
}

// HelperPath finds one of cocoon's host helpers (cocoon-proxy,
// cocoon-relay): the configured path when set (it must exist), else next to
// this binary, else in $PATH.
func HelperPath(configured, name string) (string, error) {
	if configured != "" {
		if _, err := os.Stat(configured); err != nil {
			return "", err
		}
		return configured, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("finding %s: %w", name, err)
	}
	return p, nil
}

func (s *Sandbox) dialer() agentclient.Dialer {
	if s.m.AgentDialer != nil {
		return s.m.AgentDialer
	}
	if s.state.Transport == api.TransportVsock {
		return agentclient.VsockDialer{CID: s.state.VsockCID, Port: api.DefaultVsockPort}
	}
	return agentclient.ProxyDialer{Path: filepath.Join(s.dir, proxySocket)}
}

func (s *Sandbox) clientOptions() agentclient.Options {
	a := s.m.Config.Agent
	return agentclient.Options{
		Scale:       s.m.Accelerator.TimeoutScale(),
		BootTimeout: a.BootTimeout.Duration,
		CallTimeout: a.CallTimeout.Duration,
		ConsoleLog:  s.ConsoleLog(),
		Log:         s.m.Log,
	}
}

// randomCID picks a vsock context ID; 0–2 are reserved.
func randomCID() (uint32, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("choosing a vsock cid: %w", err)
	}
	return 3 + binary.LittleEndian.Uint32(b[:])%(1<<31), nil
}

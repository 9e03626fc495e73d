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

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
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
// nics are the guest's network interfaces.
func (s *Sandbox) boot(ctx context.Context, nics []hypervisor.NIC) error {
	m := s.m
	h := m.Config.Hypervisor
	params := append([]string{}, h.KernelParams...)
	params = append(params, api.KernelParamLogLevel+"="+m.Config.Agent.LogLevel)
	cfg := hypervisor.VMConfig{
		ID:           s.state.ID,
		Dir:          s.dir,
		Binary:       h.Path,
		Machine:      h.Machine,
		Accelerator:  m.Accelerator,
		VCPUs:        s.GuestSize().VCPUs,
		MemoryMiB:    s.GuestSize().MemoryMiB,
		Kernel:       h.Kernel,
		Initrd:       h.Initrd,
		ConsoleLog:   s.ConsoleLog(),
		SharedDirs:   []hypervisor.SharedDir{{Tag: ShareTag, HostPath: s.SharedDir()}},
		Debug:        h.Debug,
		KernelParams: params,
		NICs:         nics,
	}
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
		pid, err := s.startProxy()
		if err != nil {
			return err
		}
		s.state.ProxyPID = pid
		if err := s.save(); err != nil {
			return err
		}
	}
	// Its host processes are started: this one leaves their cgroup.
	s.leaveCgroup()
	c, err := agentclient.WaitReady(ctx, s.dialer(), s.clientOptions())
	if err != nil {
		return err
	}
	// The connection that saw the agent ready serves what follows
	// (attach, the first container): one connection per sandbox user.
	s.connected(c)
	return nil
}

// startProxy starts cocoon-proxy detached: it outlives this process and
// exits by itself when QEMU closes the agent socket.
func (s *Sandbox) startProxy() (int, error) {
	path, err := s.m.proxyPath()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(path,
		"--agent-socket", filepath.Join(s.dir, agentSocket),
		"--listen", filepath.Join(s.dir, proxySocket),
		"--log", filepath.Join(s.dir, proxyLog),
	)
	// Own session, no inherited descriptors beyond /dev/null stdio.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
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
// cocoon-shim): the configured path when set (it must exist), else next to
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

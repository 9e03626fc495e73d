package agent

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agent/container"
	"github.com/cocoon-containers/cocoon/api"
)

// DefaultPowerOffDelay is how long DestroySandbox waits, after its reply is
// queued, before powering off: time for the reply to cross yamux and the
// serial port to the host, which under TCG takes milliseconds, not seconds.
const DefaultPowerOffDelay = 200 * time.Millisecond

// destroyKillTimeout bounds how long DestroySandbox waits for the containers
// to die when the host's call has no deadline.
const destroyKillTimeout = 10 * time.Second

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// Containers runs the containers. When nil, the container calls fail
	// with FailedPrecondition (tests of the transport need none).
	Containers *container.Manager
	// PowerOff is called once DestroySandbox has replied, after
	// PowerOffDelay; in the guest it is PowerOff, which does not return.
	PowerOff func()
	// PowerOffDelay defaults to DefaultPowerOffDelay.
	PowerOffDelay time.Duration
	// Sync flushes the guest's file systems (dirty pages of files that
	// containers mapped from the 9p share) before DestroySandbox replies,
	// so that the host may stop the VM at once on the reply instead of
	// waiting for the power-off; in the guest it is unix.Sync. Nil syncs
	// nothing (tests).
	Sync func()
	// UptimePath is the file Version reads the uptime from; "/proc/uptime"
	// when empty.
	UptimePath string
	// EtcDir is where CreateSandbox writes resolv.conf; "/etc" when empty.
	EtcDir string
	// ProcSysDir is where CreateSandbox sets sysctls; "/proc/sys" when empty.
	ProcSysDir string
	// Guest makes the system calls of CreateSandbox and SetGuestTime;
	// zero fields are the real calls.
	Guest GuestOps
	// Netlink configures the guest's network (UpdateInterfaces,
	// UpdateRoutes); nil is the calling thread's namespace, the guest's.
	// Tests pass a handle in a namespace of their own.
	Netlink *netlink.Handle
	// Log receives the service's messages.
	Log *logrus.Entry
}

// Service implements api.AgentService.
type Service struct {
	cfg         ServiceConfig
	destroyOnce sync.Once
}

var _ api.AgentService = (*Service)(nil)

// NewService returns the agent service.
func NewService(cfg ServiceConfig) *Service {
	if cfg.PowerOffDelay == 0 {
		cfg.PowerOffDelay = DefaultPowerOffDelay
	}
	if cfg.UptimePath == "" {
		cfg.UptimePath = "/proc/uptime"
	}
	if cfg.EtcDir == "" {
		cfg.EtcDir = "/etc"
	}
	if cfg.ProcSysDir == "" {
		cfg.ProcSysDir = "/proc/sys"
	}
	cfg.Guest.setDefaults()
	return &Service{cfg: cfg}
}

// Check reports that the agent serves: it only starts serving once its init
// duties are done.
func (s *Service) Check(ctx context.Context, _ *api.CheckRequest) (*api.CheckResponse, error) {
	return &api.CheckResponse{Serving: true}, nil
}

// Version reports the agent's build, the guest kernel and its uptime.
func (s *Service) Version(ctx context.Context, _ *api.VersionRequest) (*api.VersionResponse, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, rpcError(fmt.Errorf("reading kernel release: %w", err))
	}
	uptime, err := readUptime(s.cfg.UptimePath)
	if err != nil {
		return nil, rpcError(err)
	}
	return &api.VersionResponse{
		AgentVersion:  Version,
		KernelRelease: unix.ByteSliceToString(uts.Release[:]),
		UptimeSeconds: uptime,
		ApiVersion:    api.APIVersion,
	}, nil
}

// DestroySandbox kills every container, syncs file systems, replies, then
// powers the guest off after a short delay: once the reply is out nothing in
// the guest needs saving, and the host stops the VM itself without waiting
// (the power-off is the fallback should it not). Calling it again changes
// nothing.
func (s *Service) DestroySandbox(ctx context.Context, _ *api.DestroySandboxRequest) (*api.DestroySandboxResponse, error) {
	s.destroyOnce.Do(func() {
		if m := s.cfg.Containers; m != nil {
			if _, ok := ctx.Deadline(); !ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, destroyKillTimeout)
				defer cancel()
			}
			if err := m.Shutdown(ctx); err != nil {
				s.cfg.Log.WithError(err).Warn("stopping the containers before powering off")
			}
		}
		if s.cfg.Sync != nil {
			s.cfg.Sync()
		}
		s.cfg.Log.Info("sandbox destroyed: powering off")
		if s.cfg.PowerOff == nil {
			s.cfg.Log.Warn("no power-off configured")
			return
		}
		time.AfterFunc(s.cfg.PowerOffDelay, s.cfg.PowerOff)
	})
	return &api.DestroySandboxResponse{}, nil
}

// readUptime returns the first field of /proc/uptime, in seconds.
func readUptime(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading uptime: %w", err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	v, err := strconv.ParseFloat(first, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing uptime %q: %w", first, err)
	}
	return v, nil
}

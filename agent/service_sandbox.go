package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/api"
)

// CreateSandbox is the attach phase of a booted guest: it mounts the shared
// directory (when a tag is given), sets the hostname (when given), writes
// the guest's resolv.conf (when DNS lines are given) and applies the
// sysctls. It may be called again: a mounted share is left as it is.
func (s *Service) CreateSandbox(ctx context.Context, req *api.CreateSandboxRequest) (*api.Empty, error) {
	if err := s.createSandbox(req); err != nil {
		return nil, rpcError(fmt.Errorf("creating sandbox: %w", err))
	}
	return &api.Empty{}, nil
}

func (s *Service) createSandbox(req *api.CreateSandboxRequest) error {
	if req.Hostname != "" {
		if err := checkHostname(req.Hostname); err != nil {
			return err
		}
	}
	path := req.SharedMountPath
	if path == "" {
		path = DefaultSharedMountPath
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("%w: shared mount path %q must be absolute and clean", errInvalid, path)
	}
	if req.SharedMountTag != "" {
		if err := s.mountShare(req.SharedMountTag, path, req.SharedMountType); err != nil {
			return err
		}
	}
	if req.Hostname != "" {
		if err := s.cfg.Guest.Sethostname(req.Hostname); err != nil {
			return fmt.Errorf("setting hostname: %w", err)
		}
	}
	if len(req.Dns) > 0 {
		if err := writeResolvConf(s.cfg.EtcDir, req.Dns); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(req.Sysctls))
	for name := range req.Sysctls {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic order, first error first
	for _, name := range names {
		if err := writeSysctl(s.cfg.ProcSysDir, name, req.Sysctls[name]); err != nil {
			return err
		}
	}
	s.cfg.Log.WithFields(logrus.Fields{
		"hostname": req.Hostname, "share": req.SharedMountTag, "path": path, "type": req.SharedMountType,
		"dns": len(req.Dns), "sysctls": len(req.Sysctls),
	}).Info("sandbox created")
	return nil
}

// minRestoreEntropy is the least entropy Restored accepts: 256 bits, a
// full reseed of the CRNG.
const minRestoreEntropy = 32

// Restored is the first call to a guest restored from a template: it sets
// the clock and reseeds the CRNG with the host's entropy, so that clones
// of one template do not share a random stream.
func (s *Service) Restored(ctx context.Context, req *api.RestoredRequest) (*api.Empty, error) {
	if req.UnixNanos <= 0 || len(req.Entropy) < minRestoreEntropy {
		return nil, rpcError(fmt.Errorf("%w: restored with time %d and %d bytes of entropy (want at least %d)", errInvalid, req.UnixNanos, len(req.Entropy), minRestoreEntropy))
	}
	if err := s.cfg.Guest.Reseed(req.Entropy); err != nil {
		return nil, rpcError(err)
	}
	if err := s.cfg.Guest.SetClock(time.Unix(0, req.UnixNanos)); err != nil {
		return nil, rpcError(fmt.Errorf("setting the guest's clock: %w", err))
	}
	s.cfg.Log.Info("restored from a template: clock set, crng reseeded")
	return &api.Empty{}, nil
}

// SetGuestTime sets the guest's clock.
func (s *Service) SetGuestTime(ctx context.Context, req *api.SetGuestTimeRequest) (*api.Empty, error) {
	if req.UnixNanos <= 0 {
		return nil, rpcError(fmt.Errorf("%w: time %d", errInvalid, req.UnixNanos))
	}
	if err := s.cfg.Guest.SetClock(time.Unix(0, req.UnixNanos)); err != nil {
		return nil, rpcError(fmt.Errorf("setting the guest's clock: %w", err))
	}
	return &api.Empty{}, nil
}

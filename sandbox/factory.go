package sandbox

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/internal/proc"
	"github.com/cocoon-containers/cocoon/internal/statedir"
)

// Factory gives Create what spares it a cold boot, as Kata's template and
// cache factories do: a ready sandbox, or a saved VM (an Image) to restore
// the sandbox's VM from. Package factory implements it with VM templates
// and a pool; a Manager without one boots every sandbox. The factory makes
// its images and ready sandboxes with this package's own boot code
// (Create with AsImage, SaveImage, WarmUp) and hands ready sandboxes over
// with Adopt.
type Factory interface {
	// Take returns a ready sandbox that fits o, made sandbox id of m
	// (Adopt), or nil: Create then boots one.
	Take(ctx context.Context, m *Manager, id string, o Options) *Sandbox
	// Image returns the saved VM that a VM of configuration cfg is
	// restored from, made first if need be, or nil: the VM then boots.
	Image(ctx context.Context, m *Manager, cfg hypervisor.VMConfig) *Image
	// Failed says that restoring a VM of m from img failed with err.
	Failed(m *Manager, img *Image, err error)
	// Released says that a sandbox that Take gave, whose files are in dir,
	// is gone.
	Released(dir string)
}

// Image is a saved VM: its guest RAM and device state, and what a VM
// restored from it must keep of the VM that was saved.
type Image struct {
	// Dir identifies it; a sandbox's state records it (State.Template).
	Dir string
	// Memory and State are the files of its RAM and device state.
	Memory, State string
	// KernelParams are those it booted with.
	KernelParams []string
	// MACs are its NICs' addresses, in order: they are device state.
	MACs []string
}

// AsImage makes Create boot a sandbox whose guest is to be saved as an
// image (SaveImage) into the files memory and state: its RAM is the file
// memory, shared, so that the file receives every write. It is never
// restored itself, nor taken from a factory.
func AsImage(memory, state string) CreateOption {
	return func(o *Options) {
		o.image = &hypervisor.Template{MemoryFile: memory, StateFile: state}
	}
}

// SaveImage saves the guest of a sandbox that Create made AsImage, once its
// agent has answered (and the caller has warmed it up): the agent's
// connection and the proxy go first, so that the guest's agent sees the
// next host's connection (a restored VM's proxy) as a new one; then the
// guest stops and its device state is written, and the rest of the sandbox
// is torn down. It returns the MAC addresses of the image's NICs.
func (s *Sandbox) SaveImage(ctx context.Context) (macs []string, err error) {
	saver, ok := s.vm.(hypervisor.Saver)
	if !ok || s.image == nil {
		return nil, fmt.Errorf("saving sandbox %s: it was not made to be saved", s.state.ID)
	}
	if err := s.Close(); err != nil {
		s.m.Log.WithError(err).Debug("closing the agent connection")
	}
	if pid := s.state.ProxyPID; pid > 0 {
		pctx, cancel := context.WithTimeout(ctx, s.m.Scaled(stopGrace))
		err := proc.Terminate(pctx, pid)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("saving sandbox %s: stopping its proxy: %w", s.state.ID, err)
		}
		s.state.ProxyPID = 0
	}
	sctx, cancel := context.WithTimeout(ctx, s.m.Scaled(saveTimeout))
	err = saver.Save(sctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("saving sandbox %s: %w", s.state.ID, err)
	}
	s.vm = nil
	// QEMU made the memory file with the umask's mode: it holds a guest's
	// memory, root's alone.
	if err := os.Chmod(s.image.MemoryFile, 0o600); err != nil {
		return nil, fmt.Errorf("saving sandbox %s: %w", s.state.ID, err)
	}
	if n := s.state.Network; n != nil && n.BootMAC != "" {
		macs = []string{n.BootMAC}
	}
	if err := s.teardown(ctx, false /* graceful */); err != nil {
		return nil, fmt.Errorf("saving sandbox %s: %w", s.state.ID, err)
	}
	return macs, nil
}

// WarmUp creates a throwaway container in the guest and removes it: the
// agent's runc init and the guest kernel's container paths run once, so
// that the first real container finds that work done (under TCG, QEMU has
// translated that code; in a saved image, the guest kernel's lazily made
// state is there).
func (s *Sandbox) WarmUp(ctx context.Context) error {
	c, err := s.Client(ctx)
	if err != nil {
		return err
	}
	spec, err := warmupSpecJSON()
	if err != nil {
		return err
	}
	if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: warmupID, SpecJson: spec, Stdio: &api.StdioConfig{}}); err != nil {
		return fmt.Errorf("warming up sandbox %s: %w", s.state.ID, err)
	}
	if _, err := c.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: warmupID, Force: true}); err != nil {
		return fmt.Errorf("warming up sandbox %s: %w", s.state.ID, err)
	}
	return nil
}

// Adopt makes the ready sandbox in dir, made by another manager (a
// factory's pool), sandbox id of m: its name under m's root links to dir
// (its QEMU and proxy were started there, and their command lines name
// it), its state takes the new ID, its host processes join o's cgroup,
// and its agent must answer a health check. A sandbox that fails any of it
// is destroyed, and the error returned.
func (m *Manager) Adopt(ctx context.Context, id, dir string, o Options) (_ *Sandbox, retErr error) {
	if err := statedir.ValidateID(id); err != nil {
		return nil, fmt.Errorf("adopting sandbox: %w", err)
	}
	s := &Sandbox{m: m, dir: dir}
	if err := statedir.ReadJSON(filepath.Join(dir, stateFile), &s.state); err != nil {
		_ = removeUnmounted(nil, dir)
		return nil, fmt.Errorf("adopting sandbox %s: %w", dir, err)
	}
	defer func() {
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.Scaled(undoTimeout))
			defer cancel()
			if err := s.teardown(cctx, false /* graceful */); err != nil {
				m.Log.WithError(err).WithField("sandbox", dir).Warn("destroying a sandbox that could not be adopted")
			}
		}
	}()
	vm, err := m.Hypervisor.Attach(ctx, s.state.VM)
	if err != nil {
		return nil, fmt.Errorf("adopting sandbox %s: %w", dir, err)
	}
	s.vm = vm
	s.state.ID = id
	if err := os.Symlink(dir, m.dir(id)); err != nil {
		return nil, fmt.Errorf("adopting sandbox %s: %w", dir, err)
	}
	if err := s.createCgroup(o.Cgroup); err != nil {
		return nil, err
	}
	if s.cgroup != nil {
		for _, pid := range []int{s.state.VM.PID, s.state.ProxyPID, s.state.VirtiofsdPID} {
			if pid > 0 {
				if err := s.cgroup.Add(pid); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := s.save(); err != nil {
		return nil, err
	}
	if err := s.Health(ctx); err != nil {
		return nil, err
	}
	m.Log.WithFields(logrus.Fields{"sandbox": id, "from": dir}).Debug("ready sandbox adopted")
	return s, nil
}

// restore starts the sandbox's VM (cfg) from img instead of booting it,
// and tells the agent it was restored: clock, CRNG.
func (s *Sandbox) restore(ctx context.Context, cfg hypervisor.VMConfig, img *Image) error {
	start := time.Now()
	cfg.Template = &hypervisor.Template{MemoryFile: img.Memory, StateFile: img.State, Restore: true}
	cfg.KernelParams = img.KernelParams
	// The NICs are the image's devices: its MACs (device state), no MTU
	// feature (the image had none; attach sets the MTU). Attach gives
	// them the sandbox's MACs.
	if len(img.MACs) != len(cfg.NICs) {
		return fmt.Errorf("restoring from %s: it has %d nics, the vm %d", img.Dir, len(img.MACs), len(cfg.NICs))
	}
	nics := make([]hypervisor.NIC, len(cfg.NICs))
	macs := make([]string, len(cfg.NICs))
	for i, nic := range cfg.NICs {
		mac, err := net.ParseMAC(img.MACs[i])
		if err != nil {
			return fmt.Errorf("restoring from %s: %w", img.Dir, err)
		}
		nics[i] = hypervisor.NIC{MAC: mac, Tap: nic.Tap}
		macs[i] = mac.String()
	}
	cfg.NICs = nics
	ns := s.state.Network
	var saved NetworkState
	if ns != nil {
		saved = *ns
		if ns.Owned {
			ns.BootMAC = macs[0]
		} else {
			ns.BootMACs = macs
		}
	}
	rctx, cancel := context.WithTimeout(ctx, s.m.Scaled(undoTimeout))
	defer cancel()
	err := s.start(rctx, cfg)
	if err == nil {
		err = s.restored(rctx)
	}
	if err != nil {
		if ns != nil {
			*ns = saved
		}
		return fmt.Errorf("restoring from %s: %w", img.Dir, err)
	}
	s.state.Template = img.Dir
	if err := s.save(); err != nil {
		return err
	}
	s.m.Log.WithFields(logrus.Fields{"sandbox": s.state.ID, "image": img.Dir, "took": time.Since(start).Round(time.Millisecond)}).Debug("sandbox restored from its template")
	return nil
}

// restored gives a restored guest the host's clock and fresh entropy.
func (s *Sandbox) restored(ctx context.Context) error {
	entropy := make([]byte, restoreEntropy)
	if _, err := rand.Read(entropy); err != nil {
		return fmt.Errorf("reseeding the guest: %w", err)
	}
	c, err := s.Client(ctx)
	if err != nil {
		return err
	}
	if _, err := c.Restored(ctx, &api.RestoredRequest{UnixNanos: time.Now().UnixNano(), Entropy: entropy}); err != nil {
		return fmt.Errorf("reseeding the guest: %w", err)
	}
	return nil
}

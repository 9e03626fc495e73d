package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/oci"
)

// ErrContainerExists is returned by CreateContainer for an ID that is in
// use in the sandbox.
var ErrContainerExists = errors.New("container already exists")

// CreateContainer creates container id from bundle b: it bind-mounts the
// root file system and the bind-mounted volumes and files into the share
// (oci.ForGuest says where), then asks the agent to create the container
// with the translated spec. stdio announces the streams that the caller will
// attach. It returns the init process's PID in the guest. On failure
// nothing is left: no mounts, no directory, no container in the guest.
func (s *Sandbox) CreateContainer(ctx context.Context, id string, b *oci.Bundle, stdio *api.StdioConfig) (pid int, retErr error) {
	if err := statedir.ValidateID(id); err != nil {
		return 0, fmt.Errorf("creating container: %w", err)
	}
	if !s.state.Attached {
		return 0, fmt.Errorf("creating container %s: %w", id, ErrNotAttached)
	}
	g, err := oci.ForGuest(b, id, s.Share())
	if err != nil {
		return 0, fmt.Errorf("creating container %s: %w", id, err)
	}
	spec, err := json.Marshal(g.Spec)
	if err != nil {
		return 0, fmt.Errorf("creating container %s: encoding spec: %w", id, err)
	}
	ns, err := s.shareNS()
	if err != nil {
		return 0, fmt.Errorf("creating container %s: %w", id, err)
	}
	dir := s.Share().ContainerDir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return 0, fmt.Errorf("creating container %s: %w", id, ErrContainerExists)
		}
		return 0, fmt.Errorf("creating container %s: %w", id, err)
	}
	agentCreated := false
	defer func() {
		if retErr == nil {
			return
		}
		if agentCreated {
			s.forceRemove(ctx, id)
		}
		if err := removeUnmounted(ns, dir); err != nil {
			s.m.Log.WithError(err).WithField("container", id).Warn("cleaning up a failed container")
		}
	}()
	for _, bind := range g.Binds {
		if err := bindMount(ns, bind); err != nil {
			return 0, fmt.Errorf("creating container %s: %w", id, err)
		}
	}
	c, err := s.Client(ctx)
	if err != nil {
		return 0, fmt.Errorf("creating container %s: %w", id, err)
	}
	resp, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: id, SpecJson: spec, Stdio: stdio})
	if err != nil {
		// Unless the agent refused the ID, it may have got as far as
		// creating the container.
		agentCreated = !errors.Is(err, agentclient.ErrAlreadyExists) && !errors.Is(err, agentclient.ErrInvalidArgument)
		if errors.Is(err, agentclient.ErrAlreadyExists) {
			err = fmt.Errorf("%w: %w", ErrContainerExists, err)
		}
		return 0, fmt.Errorf("creating container %s: %w", id, err)
	}
	if err := sealReadOnly(ns, g.Binds); err != nil {
		agentCreated = true
		return 0, fmt.Errorf("creating container %s: %w", id, err)
	}
	return int(resp.GetPid()), nil
}

// Containers lists the containers the sandbox holds: those with a
// directory in its share, which CreateContainer makes and RemoveContainer
// (or the sandbox's end) removes. A sandbox that is gone has none.
func (s *Sandbox) Containers() ([]string, error) {
	if s.gone {
		return nil, nil
	}
	entries, err := os.ReadDir(s.SharedDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the containers of sandbox %s: %w", s.state.ID, err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && statedir.ValidateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// forceRemove removes a half-created container from the guest, best
// effort, with a deadline of its own: the caller's may be what failed.
func (s *Sandbox) forceRemove(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.Scaled(2*time.Second))
	defer cancel()
	c, err := s.Client(ctx)
	if err == nil {
		_, err = c.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: id, Force: true})
	}
	if err != nil && !errors.Is(err, agentclient.ErrNotFound) {
		s.m.Log.WithError(err).WithField("container", id).Debug("removing a failed container from the guest")
	}
}

// RemoveContainer removes container id from the guest (with force, a
// running one too), then unmounts its root file system and volumes from
// the share (lazily) and removes its directory. The host side is cleaned
// even when the agent or the VM is gone, or the guest no longer knows the
// container; it stays when the agent refuses, e.g. a running container
// without force. With force, the host side is cleaned whatever the agent
// answered.
func (s *Sandbox) RemoveContainer(ctx context.Context, id string, force bool) error {
	if err := statedir.ValidateID(id); err != nil {
		return fmt.Errorf("removing container: %w", err)
	}
	c, err := s.Client(ctx)
	if err != nil {
		err = fmt.Errorf("%w: %w", agentclient.ErrUnavailable, err)
	} else {
		_, err = c.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: id, Force: force})
	}
	dir := s.Share().ContainerDir(id)
	_, statErr := os.Lstat(dir)
	hostSide := statErr == nil
	switch {
	case err == nil, errors.Is(err, agentclient.ErrUnavailable):
	case errors.Is(err, agentclient.ErrNotFound):
		if !hostSide {
			return fmt.Errorf("removing container %s: %w", id, err)
		}
	case force:
		s.m.Log.WithError(err).WithField("container", id).Warn("agent failed to remove container; cleaning up the host side anyway")
	default:
		return fmt.Errorf("removing container %s: %w", id, err)
	}
	ns, err := s.shareNS()
	if err == nil {
		err = removeUnmounted(ns, dir)
	}
	if err != nil {
		return fmt.Errorf("removing container %s: %w", id, err)
	}
	return nil
}

package shimv2

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cocoon-containers/cocoon/container"
)

// Pids lists the container's processes, with their guest PIDs.
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (_ *taskAPI.PidsResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	t, _, err := s.processOf(r.ID, "")
	if err != nil {
		return nil, err
	}
	if err := t.ctr.Ready(ctx); err != nil {
		return nil, err
	}
	procs, err := t.ctr.Processes(ctx)
	if err != nil {
		return nil, err
	}
	out := &taskAPI.PidsResponse{}
	for _, p := range procs {
		out.Processes = append(out.Processes, &tasktypes.ProcessInfo{Pid: uint32(p.PID)})
	}
	return out, nil
}

// Pause freezes the container's processes.
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, r.ID, true)
}

// Resume thaws them.
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, r.ID, false)
}

func (s *Service) freeze(ctx context.Context, id string, pause bool) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	t, p, err := s.processOf(id, "")
	if err != nil {
		return nil, err
	}
	op, to, do, topic, event := container.OpResume, container.Running, t.ctr.Resume,
		runtime.TaskResumedEventTopic, any(&eventstypes.TaskResumed{ContainerID: id})
	if pause {
		op, to, do, topic, event = container.OpPause, container.Paused, t.ctr.Pause,
			runtime.TaskPausedEventTopic, &eventstypes.TaskPaused{ContainerID: id}
	}
	if err := p.check(op); err != nil {
		return nil, err
	}
	if err := t.ctr.Ready(ctx); err != nil {
		return nil, err
	}
	if err := do(ctx); err != nil {
		return nil, err
	}
	p.setStatus(to)
	s.publish(topic, event)
	return &emptypb.Empty{}, nil
}

// Stats returns the container's cgroup metrics in the guest, as the
// cgroups v1 or v2 Metrics that containerd-shim-runc-v2 returns, with the
// OOM kills of the container's memory cgroup (containerd 2.x reads them
// when a container exits with 137 to tell OOMKilled from Error). Once the
// init process has exited and the guest no longer answers for the
// container, the metrics hold only the OOM kills that the shim saw.
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (_ *taskAPI.StatsResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	t, _, err := s.processOf(r.ID, "")
	if err != nil {
		return nil, err
	}
	st, err := s.guestStats(ctx, t)
	if err != nil {
		if initStatus, _, _ := t.init.state(); initStatus != container.Stopped {
			return nil, err
		}
		log.G(ctx).WithError(err).WithField("container", r.ID).Debug("stats of an exited container: OOM kills only")
		st = container.Stats{}
	}
	any, err := metricsFromJSON(st.JSON, max(st.OOMKills, s.oomKills(t)))
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", r.ID, err)
	}
	return &taskAPI.StatsResponse{Stats: any}, nil
}

// guestStats asks the guest for the container's statistics.
func (s *Service) guestStats(ctx context.Context, t *task) (container.Stats, error) {
	if err := t.ctr.Ready(ctx); err != nil {
		return container.Stats{}, err
	}
	return t.ctr.Stats(ctx)
}

// oomKills counts the container's processes that the shim saw end by the
// guest's OOM killer.
func (s *Service) oomKills(t *task) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, p := range append([]*process{t.init}, slices.Collect(maps.Values(t.execs))...) {
		if p.killedByOOM() {
			n++
		}
	}
	return n
}

// Update changes the container's resources; containerd sends them as an
// OCI LinuxResources in JSON.
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	t, _, err := s.processOf(r.ID, "")
	if err != nil {
		return nil, err
	}
	if u := r.Resources.GetTypeUrl(); !strings.HasSuffix(u, "LinuxResources") {
		return nil, fmt.Errorf("updating %s: resources of type %q: %w", r.ID, u, errdefs.ErrInvalidArgument)
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, fmt.Errorf("updating %s: decoding resources: %w: %w", r.ID, errdefs.ErrInvalidArgument, err)
	}
	// Device rules are the guest's business (its devices are not the
	// host's), and are fixed at creation: containerd's CRI sends the
	// container's along with every update.
	res.Devices = nil
	if err := t.ctr.Update(ctx, &res); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	t, _, err := s.processOf(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := t.ctr.Resize(ctx, r.ExecID, r.Height, r.Width); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin. The relay closes it after the last
// byte once every writer of the stdin FIFO has closed it; containerd's
// clients call CloseIO before they close theirs (ctr from inside its copy
// to the FIFO), so CloseIO returns at once, and only if the FIFO has not
// ended within a grace period is it closed, and the process's stdin closed
// through the agent. (The shim holds no writer of its own on the FIFO, so a
// client's close ends stdin even when it never calls CloseIO.)
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	t, p, err := s.processOf(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if !r.Stdin || p.io.stdin == "" {
		return &emptypb.Empty{}, nil
	}
	grace := s.scaled(time.Second)
	go func() {
		select {
		case <-p.stdinEOF:
			return
		case <-p.exited:
			return
		case <-time.After(grace):
		}
		p.closeStdin()
		ctx, cancel := context.WithTimeout(s.ctx, grace)
		defer cancel()
		if err := t.ctr.CloseStdin(ctx, p.execID); err != nil {
			log.G(ctx).WithError(err).Debug("closing stdin")
		}
	}()
	return &emptypb.Empty{}, nil
}

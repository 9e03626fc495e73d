package container

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/hooks"
)

// hookState is the state hooks get on stdin.
func hookState(rec *Record, status specs.ContainerState) *specs.State {
	return &specs.State{
		Version:     specs.Version,
		ID:          rec.ID,
		Status:      status,
		Pid:         rec.Pid,
		Bundle:      rec.Bundle,
		Annotations: rec.Annotations,
	}
}

// runHooks runs the container's hooks of the given kinds, in order, with
// its state; the first failure stops them.
func runHooks(ctx context.Context, rec *Record, status specs.ContainerState, kinds ...hooks.Kind) error {
	hs := hookState(rec, status)
	for _, k := range kinds {
		if err := hooks.Run(ctx, k, hooks.Of(rec.Hooks, k), hs); err != nil {
			return err
		}
	}
	return nil
}

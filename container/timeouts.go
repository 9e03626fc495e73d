package container

import "time"

// Deadlines at hardware speed; sandbox.Manager.Scaled stretches them by
// the accelerator's slowdown. Both front ends use them through the
// container layer (CreateContext, Container.Delete, DestroySandbox, Kill).
const (
	// cleanupTimeout bounds undoing a failed step.
	cleanupTimeout = 5 * time.Second
	// deleteTimeout bounds a delete: the container's removal, its hooks
	// and the sandbox's destruction.
	deleteTimeout = 20 * time.Second
	// createMargin is added to the boot timeout to bound a create.
	createMargin = 20 * time.Second
	// relayGrace is how long a removed process's relay may take to exit
	// by itself.
	relayGrace = 500 * time.Millisecond
	// killedRelayGrace bounds, in wall-clock time, how long the relays
	// of a killed sandbox may take to notice.
	killedRelayGrace = 2 * time.Second
	// killGrace bounds the SIGKILL that cleans up after a failed start or
	// exec (Container.Kill).
	killGrace = 2 * time.Second
)

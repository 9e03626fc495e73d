package sandbox

import "time"

// Deadlines at hardware speed; Manager.Scaled stretches them by the
// accelerator's slowdown, as every deadline of a sandbox is.
const (
	// stopGrace bounds how long a process asked to stop (QEMU told to
	// quit, the proxy or virtiofsd sent SIGTERM) may take before it is
	// killed.
	stopGrace = time.Second
	// exitGrace bounds how long the proxy or virtiofsd may take to exit
	// by themselves once QEMU is gone.
	exitGrace = 200 * time.Millisecond
	// undoTimeout bounds undoing what a failed create, restore or take
	// from the pool left.
	undoTimeout = 3 * time.Second
	// saveTimeout bounds saving a guest's device state (SaveImage).
	saveTimeout = 5 * time.Second
)

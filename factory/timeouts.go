package factory

import "time"

// Deadlines at hardware speed; sandbox.Manager.Scaled stretches them by
// the accelerator's slowdown.
const (
	// undoTimeout bounds destroying a template's sandbox or a pooled one
	// that failed.
	undoTimeout = 5 * time.Second
	// fillTimeout bounds one refill of the pool (a process of its own).
	fillTimeout = 2 * time.Minute
)

// failBackoff is how long, in wall-clock time, the pool waits after a
// refill failed before a command that finds it short starts another: a
// configuration that cannot make pooled sandboxes must not make every
// command start a refill that fails.
const failBackoff = time.Minute

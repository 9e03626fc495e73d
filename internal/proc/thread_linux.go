package proc

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// OnOwnThread runs fn on an OS thread of its own, locked to it for good:
// fn may change what is the thread's alone (its mount namespace, its
// credentials), and the Go runtime ends the thread when fn returns rather
// than run other goroutines on it. Never on the process's main thread:
// the runtime cannot end that one and would keep it, changed, for the
// process's life, and /proc/self shows that thread's view (its mount
// namespace in /proc/self/mountinfo). A goroutine that lands there holds
// it while another thread does the work.
func OnOwnThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Locked here, the main thread runs nothing else: the
			// goroutine below gets another.
			err := OnOwnThread(fn)
			runtime.UnlockOSThread()
			done <- err
			return
		}
		// No UnlockOSThread: fn may have changed the thread.
		done <- fn()
	}()
	return <-done
}

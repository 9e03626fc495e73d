package proc

import (
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOnOwnThreadNeverMain: fn never runs on the main thread, and every
// call gets a thread no other call had (each ends with its fn).
func TestOnOwnThreadNeverMain(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = OnOwnThread(func() error {
				tid := unix.Gettid()
				mu.Lock()
				defer mu.Unlock()
				if tid == unix.Getpid() {
					t.Error("fn ran on the main thread")
				}
				if seen[tid] {
					t.Errorf("thread %d ran fn twice", tid)
				}
				seen[tid] = true
				return nil
			})
		}()
	}
	wg.Wait()
}

package main

import (
	"fmt"
	"os"
	"syscall"
)

// readyPipe tells the runtime that started the relay how its start went:
// "ready\n" once the streams are attached, or the error. It is written once,
// then closed.
type readyPipe struct {
	f *os.File // nil without --ready-fd, or once written
}

// newReadyPipe wraps descriptor fd; a negative fd means no pipe.
func newReadyPipe(fd int) *readyPipe {
	if fd < 0 {
		return &readyPipe{}
	}
	// The guard, which outlives the ready pipe, must not inherit it: the
	// runtime reads the pipe to its end.
	syscall.CloseOnExec(fd)
	return &readyPipe{f: os.NewFile(uintptr(fd), "ready-fd")}
}

// fd is the pipe's descriptor, or -1.
func (r *readyPipe) fd() int {
	if r.f == nil {
		return -1
	}
	return int(r.f.Fd())
}

// ok reports that the relay is attached.
func (r *readyPipe) ok() { r.send("ready\n") }

// fail reports err, unless the relay was reported ready already.
func (r *readyPipe) fail(err error) { r.send(fmt.Sprintf("cocoon-relay: %v\n", err)) }

func (r *readyPipe) send(msg string) {
	if r.f == nil {
		return
	}
	r.f.WriteString(msg)
	r.f.Close()
	r.f = nil
}

// aliveFile wraps descriptor fd, the guards' alive pipe; a negative fd
// means none.
func aliveFile(fd int) *os.File {
	if fd < 0 {
		return nil
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "alive-fd")
}

package relay

import (
	"context"
	"fmt"
	"os"

	"github.com/cocoon-containers/cocoon/api"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// MakeRaw puts the terminal f in raw mode (x/term, as cfmakeraw(3)), and
// returns a function that restores its previous mode. With runc the pty
// whose master the caller holds is the process's own, so its line
// discipline echoes and cooks; here the process has its own pty in the
// guest, which does that, and the host's one must pass bytes unchanged both
// ways: no echo, no CR/NL translation, no signals from ^C.
func MakeRaw(f *os.File) (restore func(), err error) {
	var old *term.State
	if err := control(f, func(fd int) error {
		var err error
		old, err = term.MakeRaw(fd)
		return err
	}); err != nil {
		return nil, err
	}
	return func() {
		control(f, func(fd int) error { return term.Restore(fd, old) })
	}, nil
}

// windowSize reads the size of the terminal f.
func windowSize(f *os.File) (rows, cols uint16, err error) {
	err = control(f, func(fd int) error {
		ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if err != nil {
			return err
		}
		rows, cols = ws.Row, ws.Col
		return nil
	})
	return rows, cols, err
}

// control runs fn on f's descriptor without taking it out of non-blocking
// mode, as f.Fd() would.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// resize gives the process's terminal the size of the relay's. A terminal
// whose size was never set (0x0) is left alone: the guest's keeps its
// default.
func (s *session) resize(ctx context.Context) {
	rows, cols, err := windowSize(s.cfg.Console)
	if err != nil {
		s.log.WithError(fmt.Errorf("reading the terminal's size: %w", err)).Warn("not resizing")
		return
	}
	if rows == 0 && cols == 0 {
		return
	}
	log := s.log.WithField("rows", rows).WithField("cols", cols)
	if _, err := s.agent.ResizeTty(ctx, &api.ResizeTtyRequest{
		ContainerId: s.cfg.ContainerID,
		ExecId:      s.cfg.ExecID,
		Rows:        uint32(rows),
		Cols:        uint32(cols),
	}); err != nil {
		log.WithError(err).Warn("resizing the terminal")
		return
	}
	log.Debug("resized the terminal")
}

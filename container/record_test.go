package container

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateLoadListRemove(t *testing.T) {
	s := &RecordStore{Root: filepath.Join(t.TempDir(), "root")}
	c := &Record{ID: "a", Bundle: "/b", Status: Creating, Created: time.Now().UTC()}
	l, err := s.Create(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(&Record{ID: "a"}); !errors.Is(err, ErrExists) || err.Error() != "container with id exists: a" {
		t.Fatalf("duplicate: %v", err)
	}
	c.Status = Created
	if err := s.Save(c); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	got, err := s.Load("a")
	if err != nil || got.Status != Created || got.Bundle != "/b" {
		t.Fatalf("%+v %v", got, err)
	}
	// A half-deleted entry (directory without state) and foreign entries
	// are skipped by List.
	os.Mkdir(filepath.Join(s.Root, "half"), 0o700)
	os.Mkdir(filepath.Join(s.Root, ".vm"), 0o700)
	os.WriteFile(filepath.Join(s.Root, "file"), nil, 0o600)
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != "a" {
		t.Fatalf("list %v %v", list, err)
	}
	_, l, err = s.Lock("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if _, err := s.Load("a"); !errors.Is(err, ErrNotExist) || err.Error() != `container "a" does not exist` {
		t.Fatalf("after remove: %v", err)
	}
	if _, _, err := s.Lock("a"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("lock after remove: %v", err)
	}
}

func TestInvalidIDs(t *testing.T) {
	s := &RecordStore{Root: t.TempDir()}
	for _, id := range []string{"", "../x", "a/b", strings.Repeat("x", 1000)} {
		if _, err := s.Create(&Record{ID: id}); err == nil {
			t.Errorf("%q accepted", id)
		}
		if _, err := s.Load(id); err == nil {
			t.Errorf("load %q accepted", id)
		}
	}
	if entries, _ := os.ReadDir(s.Root); len(entries) != 0 {
		t.Fatalf("left %v", entries)
	}
}

func TestCurrentStatus(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	c := &Record{Status: Running, Pid: pid, PidStart: start}
	if s := c.CurrentStatus(); s != Running {
		t.Fatalf("live relay: %s", s)
	}
	c.PidStart = start + 1 // a reused PID
	if s := c.CurrentStatus(); s != Stopped {
		t.Fatalf("reused pid: %s", s)
	}
	c.PidStart = start
	cmd.Process.Kill()
	cmd.Wait()
	if s := c.CurrentStatus(); s != Stopped {
		t.Fatalf("dead relay: %s", s)
	}
	if s := (&Record{Status: Creating}).CurrentStatus(); s != Creating {
		t.Fatalf("creating: %s", s)
	}
}

func TestParseStartTime(t *testing.T) {
	stat := "123 (a b) c) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10"
	if v, err := parseStartTime(stat); err != nil || v != 98765 {
		t.Fatalf("%d %v", v, err)
	}
	if _, err := parseStartTime("garbage"); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestCheckOp(t *testing.T) {
	for _, tc := range []struct {
		op   Op
		s    Status
		want string
	}{
		{OpStart, Created, ""},
		{OpStart, Running, "cannot start an already running container"},
		{OpStart, Stopped, "cannot start a container that has stopped"},
		{OpStart, Paused, "cannot start a container in the paused state"},
		{OpKill, Running, ""},
		{OpKill, Created, ""},
		{OpKill, Paused, ""},
		{OpKill, Stopped, "container not running"},
		{OpPause, Running, ""},
		{OpPause, Created, "container not running"},
		{OpResume, Paused, ""},
		{OpResume, Running, "container not paused"},
		{OpExec, Running, ""},
		{OpExec, Stopped, "cannot exec in a stopped container"},
		{OpDelete, Stopped, ""},
		{OpDelete, Created, ""},
		{OpDelete, Running, "cannot delete container x that is not stopped: running"},
		{OpDelete, Paused, "cannot delete container x that is not stopped: paused"},
	} {
		err := CheckOp(tc.op, "x", tc.s)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("op %d in %s: %q, want %q", tc.op, tc.s, got, tc.want)
		}
	}
}

// TestLocksAreIndependent: a command holding one container's lock does
// not hold up another container's.
func TestLocksAreIndependent(t *testing.T) {
	s := &RecordStore{Root: t.TempDir()}
	for _, id := range []string{"a", "b"} {
		l, err := s.Create(&Record{ID: id, Status: Created})
		if err != nil {
			t.Fatal(err)
		}
		l.Unlock()
	}
	_, la, err := s.Lock("a")
	if err != nil {
		t.Fatal(err)
	}
	defer la.Unlock()
	done := make(chan error, 1)
	go func() {
		_, lb, err := s.Lock("b")
		if err == nil {
			lb.Unlock()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("locking b waited for a")
	}
}

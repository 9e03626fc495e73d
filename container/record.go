package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/internal/statedir"
)

// File names inside a container's directory.
const (
	stateFile = "state.json"
	lockFile  = "lock"
)

// Sentinel errors; their texts are runc's where runc has one.
var (
	// ErrNotExist: no container of that ID under the root.
	ErrNotExist = errors.New("does not exist")
	// ErrExists: the ID is taken.
	ErrExists = errors.New("container with id exists")
)

// Record is what the runtime records about one container.
type Record struct {
	// ID is the container's ID.
	ID string `json:"id"`
	// Bundle is the bundle directory, absolute.
	Bundle string `json:"bundle"`
	// Rootfs is the host path of the root file system.
	Rootfs string `json:"rootfs"`
	// Pid is the cocoon-relay relaying the init process: the "container
	// PID" that callers wait for and that state reports.
	Pid int `json:"pid,omitempty"`
	// PidStart is the relay's start time (field 22 of /proc/<pid>/stat),
	// which tells the relay apart from a later process reusing its PID.
	PidStart uint64 `json:"pidStart,omitempty"`
	// Status is the last recorded status; Status() derives the current one.
	Status Status `json:"status"`
	// Created is when create began.
	Created time.Time `json:"created"`
	// Annotations are the spec's.
	Annotations map[string]string `json:"annotations,omitempty"`
	// SandboxID names the sandbox (VM) the container runs in.
	SandboxID string `json:"sandboxId"`
	// SandboxRoot is the sandbox manager's root (the sandbox's directory
	// is SandboxRoot/SandboxID): what is needed to reach the sandbox.
	SandboxRoot string `json:"sandboxRoot"`
	// OwnsSandbox is set when this container created the sandbox (a
	// container of its own, or a pod's sandbox container).
	OwnsSandbox bool `json:"ownsSandbox,omitempty"`
	// GuestPID is the init process's PID in the guest: a pod's sandbox
	// container's namespaces are joined there.
	GuestPID int `json:"guestPid,omitempty"`
	// Process and Hooks are the spec's, as create read them: the spec
	// says that changes to config.json after create do not affect the
	// container, so start, exec and delete never read it again.
	Process *specs.Process `json:"process,omitempty"`
	Hooks   *specs.Hooks   `json:"hooks,omitempty"`
}

// RecordStore keeps the records under the runtime root.
type RecordStore struct {
	// Root is the directory holding one directory per container.
	Root string
}

func (s *RecordStore) dir(id string) string { return filepath.Join(s.Root, id) }

// Create makes the container's directory (ErrExists when the ID is taken)
// and writes c, holding the container's lock, which the caller releases.
func (s *RecordStore) Create(c *Record) (*statedir.Lock, error) {
	if err := statedir.ValidateID(c.ID); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.Root, 0o711); err != nil {
		return nil, fmt.Errorf("creating root %s: %w", s.Root, err)
	}
	dir := s.dir(c.ID)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%w: %s", ErrExists, c.ID)
		}
		return nil, fmt.Errorf("creating state of %s: %w", c.ID, err)
	}
	l, err := statedir.LockFile(filepath.Join(dir, lockFile))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.Save(c); err != nil {
		l.Unlock()
		os.RemoveAll(dir)
		return nil, err
	}
	return l, nil
}

// Lock takes container id's lock and returns its record, read under the
// lock; ErrNotExist when it has none (never created, or deleted while the
// caller waited).
func (s *RecordStore) Lock(id string) (*Record, *statedir.Lock, error) {
	if err := statedir.ValidateID(id); err != nil {
		return nil, nil, err
	}
	l, err := statedir.LockFile(filepath.Join(s.dir(id), lockFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, notExist(id)
		}
		return nil, nil, err
	}
	c, err := s.Load(id)
	if err != nil {
		l.Unlock()
		return nil, nil, err
	}
	return c, l, nil
}

// Load reads container id's record without locking: state files are
// replaced atomically, so a reader sees a whole one.
func (s *RecordStore) Load(id string) (*Record, error) {
	if err := statedir.ValidateID(id); err != nil {
		return nil, err
	}
	var c Record
	if err := statedir.ReadJSON(filepath.Join(s.dir(id), stateFile), &c); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, notExist(id)
		}
		return nil, err
	}
	return &c, nil
}

// Save writes c atomically; the caller holds its lock.
func (s *RecordStore) Save(c *Record) error {
	return statedir.WriteJSON(filepath.Join(s.dir(c.ID), stateFile), c)
}

// Remove deletes container id's directory; the caller holds its lock.
func (s *RecordStore) Remove(id string) error {
	if err := statedir.ValidateID(id); err != nil {
		return err
	}
	// The state file goes first: a concurrent List or Lock then sees the
	// container as gone even if removing the rest fails.
	if err := os.Remove(filepath.Join(s.dir(id), stateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing state of %s: %w", id, err)
	}
	if err := os.RemoveAll(s.dir(id)); err != nil {
		return fmt.Errorf("removing state of %s: %w", id, err)
	}
	return nil
}

// List returns the records under the root, sorted by ID. Entries that are
// not container directories, or have no readable state (being created or
// deleted), are skipped. A missing root is an empty list.
func (s *RecordStore) List() ([]*Record, error) {
	entries, err := os.ReadDir(s.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s: %w", s.Root, err)
	}
	var out []*Record
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || statedir.ValidateID(e.Name()) != nil {
			continue
		}
		c, err := s.Load(e.Name())
		if err != nil {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func notExist(id string) error {
	return &notExistError{id: id}
}

// notExistError reads as `container "x" does not exist` and wraps
// ErrNotExist; containerd and CRI-O look for "does not exist".
type notExistError struct{ id string }

func (e *notExistError) Error() string { return fmt.Sprintf("container %q does not exist", e.id) }
func (e *notExistError) Unwrap() error { return ErrNotExist }

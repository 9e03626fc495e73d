package container

import (
	"errors"
	"fmt"

	"github.com/opencontainers/runc/libcontainer"
)

// The errors callers test with errors.Is; the agent's service maps each to a
// status code of the same name.
var (
	// ErrNotFound: no container or process of that ID.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: the ID is taken, or a stream is already attached.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidArgument: a malformed or unsupported spec, process or
	// resource set, or a bad ID.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrFailedPrecondition: the operation does not apply to the current
	// state (starting a running container, exec into a stopped one).
	ErrFailedPrecondition = errors.New("failed precondition")
)

// invalidf returns an ErrInvalidArgument error with a formatted message.
func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, a...))
}

// preconditionf returns an ErrFailedPrecondition error with a formatted message.
func preconditionf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrFailedPrecondition, fmt.Sprintf(format, a...))
}

// stateError marks libcontainer's state errors (not running, not paused...)
// as failed preconditions, keeping the original in the chain.
func stateError(err error) error {
	for _, e := range []error{
		libcontainer.ErrNotRunning, libcontainer.ErrNotPaused,
		libcontainer.ErrRunning, libcontainer.ErrPaused,
	} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", ErrFailedPrecondition, err)
		}
	}
	if errors.Is(err, libcontainer.ErrExist) {
		return fmt.Errorf("%w: %w", ErrAlreadyExists, err)
	}
	return err
}

// errorf wraps kind with a formatted message.
func errorf(kind error, format string, a ...any) error {
	return fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, a...))
}

package container

import (
	"errors"

	"github.com/cocoon-containers/cocoon/agentclient"
)

// Errors of container operations that callers test with errors.Is. The
// agent's are agentclient's sentinels, so that an error the guest answered
// with and one the host found match the same way.
var (
	// ErrNotFound: no such container or process.
	ErrNotFound = agentclient.ErrNotFound
	// ErrAlreadyExists: the container or exec ID is taken.
	ErrAlreadyExists = agentclient.ErrAlreadyExists
	// ErrInvalidArgument: the request, the bundle or its annotations are
	// malformed.
	ErrInvalidArgument = agentclient.ErrInvalidArgument
	// ErrFailedPrecondition: the container's state does not allow it.
	ErrFailedPrecondition = agentclient.ErrFailedPrecondition
	// ErrUnavailable: the agent cannot be reached (it, the proxy or the VM
	// went away).
	ErrUnavailable = agentclient.ErrUnavailable
	// ErrSandboxGone: the container's sandbox no longer exists.
	ErrSandboxGone = errors.New("the container's sandbox is gone")
)

package agentclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors the agent answers with, classified by their status code. This is
// the one place where the agent's status codes become errors that callers
// test with errors.Is; the agent's own message is kept as the error's text.
var (
	// ErrNotFound: no such container or process (codes.NotFound).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: the container or exec ID is taken (codes.AlreadyExists).
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidArgument: the request or its spec is malformed
	// (codes.InvalidArgument).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrFailedPrecondition: the container is not in a state that allows
	// the operation, e.g. removing a running container without force
	// (codes.FailedPrecondition).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable: the connection to the agent is lost (the agent, the
	// proxy or the VM went away), or the agent answered codes.Unavailable.
	ErrUnavailable = errors.New("agent unavailable")
)

// codeErrors maps the status codes that callers act on to their sentinels.
func codeError(c codes.Code) error {
	switch c {
	case codes.NotFound:
		return ErrNotFound
	case codes.AlreadyExists:
		return ErrAlreadyExists
	case codes.InvalidArgument:
		return ErrInvalidArgument
	case codes.FailedPrecondition:
		return ErrFailedPrecondition
	case codes.Unavailable:
		return ErrUnavailable
	}
	return nil
}

// agentError is an error the agent answered with: its text is the agent's
// message, and it unwraps to both the sentinel of its status code and the
// original status error.
type agentError struct {
	kind  error
	msg   string
	cause error
}

func (e *agentError) Error() string   { return e.msg }
func (e *agentError) Unwrap() []error { return []error{e.kind, e.cause} }

// callError wraps the error of a call to method. A call that ran out of
// time reports the context's error, whichever side noticed first: the agent
// gets the deadline too and may answer DeadlineExceeded before the client's
// context expires. Status codes with a sentinel are translated (see
// ErrNotFound and the others); an error that is no answer of the agent's (a
// closed or broken connection) is ErrUnavailable.
func callError(ctx context.Context, method string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("agent %s: %w", method, ctxErr)
	}
	st, ok := status.FromError(err)
	if !ok || errors.Is(err, ttrpc.ErrClosed) {
		// Not an answer of the agent's: the connection failed.
		return fmt.Errorf("agent %s: %w: %w", method, ErrUnavailable, err)
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fmt.Errorf("agent %s: %w", method, context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("agent %s: %w", method, context.Canceled)
	}
	if kind := codeError(st.Code()); kind != nil {
		msg := st.Message()
		if msg == "" {
			msg = kind.Error()
		}
		return fmt.Errorf("agent %s: %w", method, &agentError{kind: kind, msg: msg, cause: err})
	}
	return fmt.Errorf("agent %s: %w", method, err)
}

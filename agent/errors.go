package agent

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoon-containers/cocoon/agent/container"
)

// errContainersDisabled answers the container calls of an agent built
// without a container manager (tests of the transport).
var errContainersDisabled = status.Error(codes.FailedPrecondition, "this agent runs no containers")

// rpcError translates an error of the agent's packages into a status error
// the host maps back: NotFound, AlreadyExists, InvalidArgument,
// FailedPrecondition, DeadlineExceeded and Canceled by their meaning,
// anything else Internal. The message is the error's, context first.
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, container.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, container.ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, container.ErrInvalidArgument), errors.Is(err, errInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, container.ErrFailedPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// errInvalid marks bad sandbox-level input (hostname, sysctl names).
var errInvalid = errors.New("invalid argument")

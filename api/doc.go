// Package api is the cocoon agent protocol: the ttrpc service generated from
// agent.proto, the header that starts every stream the host opens to the agent,
// and the names both sides agree on (the serial port, kernel parameters).
package api

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative agent.proto

const (
	// APIVersion is the revision of the protocol; the agent reports it in Version.
	APIVersion = 1

	// AgentPortName is the name of the virtio-serial port that carries the agent
	// channel; the guest finds it under /sys/class/virtio-ports/*/name.
	AgentPortName = "agent.channel.0"

	// DefaultVsockPort is the vsock port the agent listens on when the
	// transport is vsock.
	DefaultVsockPort = 1024

	// KernelParamTransport selects the agent transport on the guest kernel
	// command line: "serial" (default) or "vsock".
	KernelParamTransport = "cocoon.transport"
	// KernelParamVsockPort overrides DefaultVsockPort on the kernel command line.
	KernelParamVsockPort = "cocoon.vsock_port"
	// KernelParamLogLevel sets the agent's log level (logrus level names).
	KernelParamLogLevel = "cocoon.log"

	// TransportSerial is the virtio-serial port multiplexed with yamux.
	TransportSerial = "serial"
	// TransportVsock is AF_VSOCK, one connection per stream.
	TransportVsock = "vsock"

	// SharedMount9p and SharedMountVirtioFS are the values of
	// CreateSandboxRequest.SharedMountType: the file system the guest mounts
	// the shared directory with (empty means 9p).
	SharedMount9p       = "9p"
	SharedMountVirtioFS = "virtiofs"
)

// Package agent is the guest side of cocoon: the code of cocoon-agent, the
// program that runs as PID 1 inside every sandbox VM.
//
// Its duties, in the order cmd/agent performs them:
//
//   - init: move its root off the initramfs so that containers can
//     pivot_root, mount the kernel file systems, give itself a console, set
//     PATH (SetupStdio, SetupGuest);
//   - reap orphans, while letting the code that starts processes wait for its
//     own children (package reaper);
//   - find the agent channel (a virtio-serial port multiplexed with yamux, or
//     AF_VSOCK) and accept the streams the host opens on it (Transport);
//   - read the api.StreamHeader that starts every stream and dispatch it: RPC
//     streams to the ttrpc Agent service, stdio streams to the process they
//     name (Server, Service, Service.Stdio);
//   - attach the sandbox (CreateSandbox: shared directory, hostname, DNS,
//     sysctls) and run its containers with runc's libcontainer (package
//     container);
//   - kill the containers and power the guest off when the sandbox is
//     destroyed (DestroySandbox, PowerOff).
//
// The package only builds for Linux: it runs in the guest and nowhere else.
package agent

// Version is the agent's version, set at build time with
// -ldflags '-X github.com/cocoon-containers/cocoon/agent.Version=...'.
// It is the only package-level variable, and nothing writes it at run time.
var Version = "dev"

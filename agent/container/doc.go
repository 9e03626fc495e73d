// Package container runs OCI containers inside the guest with runc's
// libcontainer: the guest half of "every container in its own VM". It knows
// nothing of ttrpc or yamux; the agent's service translates its errors
// (errors.go) into status codes, and hands it the stdio streams the host
// opens (Process.Attach).
//
// # Processes and reaping
//
// The agent is PID 1 and reaps every orphan of the guest (package reaper).
// libcontainer waits for its own bootstrap processes ("runc init" stage 0
// and stage 1) while it starts a container or an exec'd process; those
// starts therefore run inside reaper.Reaper.Start, which pauses reaping. The
// PID a start returns (the container's init, or the exec'd process) is
// registered with the reaper, and its exit status comes from the reaper:
// nothing here ever calls libcontainer's Process.Wait.
//
// # Stdio
//
// A process's stdin, stdout and stderr are pipes, resized to 1 MiB, or,
// for a terminal process, a pty whose master libcontainer hands over through
// a console socket. The host attaches one raw stream per pipe (or one for
// the terminal) after the process exists; until then output waits in the
// pipe. Output streams are copied with large reads and no framing; the
// stream's write side is closed once the pipe reaches EOF. Process.Wait
// returns once the process has exited and everything it wrote before
// exiting has been passed to its streams, so that the host has every byte
// before the exit status.
package container

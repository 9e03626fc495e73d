// Package container is cocoon's host-side container: what both front ends
// (cocoon-runtime's runc CLI and the containerd shim v2) call, and the only
// host code besides package sandbox that speaks the agent API. It owns a
// container's lifecycle on top of a sandbox (create, start, exec, signal,
// wait, pause, resume, update, stats, processes, delete), the pod rules of
// CRI-O and containerd's CRI (which sandbox a container joins, what its
// namespaces become), sandbox naming, the OCI hooks, the per-process relays
// (cocoon-relay) that cocoon-runtime starts, and cocoon-runtime's records
// under its root (runc's --root): <root>/<id>/state.json, written
// atomically under <root>/<id>/lock. Each container has its own lock, so
// commands on different containers never wait on each other; List skips
// entries that are half created or half deleted.
package container

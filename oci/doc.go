// Package oci loads and validates OCI bundles (config.json and the root
// file system next to it) and translates a container's spec for the guest:
// host paths become paths in the sandbox's shared directory, and what
// cannot cross into a VM (host namespace paths, hooks, host security
// labels, host cgroup paths) is dropped from the guest's copy.
package oci

package oci

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// GuestSharePath is where the guest mounts the sandbox's shared directory.
const GuestSharePath = "/run/cocoon/shared"

// Share is the layout of a sandbox's shared directory, the same on both
// sides: each container has a directory named by its ID, holding its root
// file system at rootfs and its bind-mounted volumes and files at
// mounts/<n>, n being the mount's index in the spec.
type Share struct {
	// HostDir is the shared directory on the host (<sandbox dir>/shared).
	HostDir string
	// GuestDir is where the guest mounts it; empty means GuestSharePath.
	GuestDir string
}

func (s Share) guestDir() string {
	if s.GuestDir == "" {
		return GuestSharePath
	}
	return s.GuestDir
}

// ContainerDir returns the host directory of container id in the share.
func (s Share) ContainerDir(id string) string { return filepath.Join(s.HostDir, id) }

// Rootfs returns the host and guest paths of container id's root file
// system.
func (s Share) Rootfs(id string) (host, guest string) {
	return filepath.Join(s.HostDir, id, "rootfs"), filepath.Join(s.guestDir(), id, "rootfs")
}

// Mount returns the host and guest paths of mount n of container id.
func (s Share) Mount(id string, n int) (host, guest string) {
	rel := filepath.Join(id, "mounts", strconv.Itoa(n))
	return filepath.Join(s.HostDir, rel), filepath.Join(s.guestDir(), rel)
}

// checkID refuses container IDs that are not one plain path component:
// the ID names a directory in the share.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("container id %q cannot name a directory", id)
	}
	return nil
}

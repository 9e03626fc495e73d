package oci

import (
	"fmt"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
)

// hasSubmounts tells whether a mount point lies below dir.
func hasSubmounts(dir string) (bool, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false, fmt.Errorf("listing mounts under %s: %w", dir, err)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		return false, fmt.Errorf("listing mounts under %s: %w", dir, err)
	}
	for _, m := range mounts {
		if m.Mountpoint != real {
			return true, nil
		}
	}
	return false, nil
}

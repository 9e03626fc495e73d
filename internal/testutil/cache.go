package testutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// CacheDir is where make keeps what it builds or unpacks outside the clone
// (crictl, critest, containerd 2.x, QEMU 7.2, the guest kernel):
// $COCOON_CACHE, default /var/cache/cocoon.
func CacheDir() string {
	if cache := os.Getenv("COCOON_CACHE"); cache != "" {
		return cache
	}
	return "/var/cache/cocoon"
}

// CacheFile returns the path of rel under CacheDir, or an error that names
// what is missing and the make target that puts it there.
func CacheFile(rel, what, target string) (string, error) {
	path := filepath.Join(CacheDir(), rel)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s is not there (%s): %w", what, target, err)
	}
	return path, nil
}

package container

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// checkPidFile fails early, before anything is booted, when the pid file
// cannot be written: its directory does not exist.
func checkPidFile(path string) error {
	if path == "" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if fi, err := os.Stat(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("pid file %s: %w", path, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("pid file %s: %s is not a directory", path, filepath.Dir(abs))
	}
	return nil
}

// WritePidFile writes pid to path atomically, as runc does: a temporary
// file next to it, renamed.
func WritePidFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_SYNC, 0o666)
	if err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	f.Close()
	if err == nil {
		err = os.Rename(tmp, abs)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing pid file: %w", err)
	}
	return nil
}

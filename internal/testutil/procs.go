package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
)

// SandboxRoot is where `cocoon-runtime --root root` keeps its sandboxes
// (cmd/runtime's sandboxRoot): root must be absolute.
func SandboxRoot(root string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(root)))
	return "/run/cocoon/.vm/" + hex.EncodeToString(sum[:4])
}

// ProcessesOf lists the live processes whose command line mentions s, as
// "PID: command line".
func ProcessesOf(s string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		cl := strings.ReplaceAll(string(data), "\x00", " ")
		if strings.Contains(cl, s) {
			found = append(found, filepath.Base(d)+": "+cl)
		}
	}
	return found
}

// QEMUCount counts the QEMU processes whose command line mentions s (a
// sandbox root).
func QEMUCount(s string) int {
	n := 0
	for _, p := range ProcessesOf(s) {
		if strings.Contains(p, "qemu-system") {
			n++
		}
	}
	return n
}

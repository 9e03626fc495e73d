package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// Version is a QEMU release.
type Version struct {
	Major, Minor, Patch int
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast tells whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// What the QEMU releases that cocoon uses brought.
var (
	// readOnlyRAMVersion brought memory-backend-file's rom=off: readonly=on
	// opens the file read-only, and a private mapping of it is writable
	// RAM, not a ROM. A template's clones then cannot write its file.
	readOnlyRAMVersion = Version{8, 2, 0}
	// fileMigrationVersion is the first QEMU whose "fd:" migration to a
	// plain file is deprecated (9.1) in favour of "file:" with an fdset,
	// which it has had since 8.2.
	fileMigrationVersion = Version{9, 1, 0}
)

// ReadOnlyTemplates tells whether v maps a template's memory from a file
// opened read-only (readOnlyRAMVersion): a VM restored from it then
// cannot write the template whatever it does.
func (v Version) ReadOnlyTemplates() bool {
	return v.AtLeast(readOnlyRAMVersion.Major, readOnlyRAMVersion.Minor)
}

// fileMigration tells whether v takes a template's device state by "file:"
// from an fdset.
func (v Version) fileMigration() bool {
	return v.AtLeast(fileMigrationVersion.Major, fileMigrationVersion.Minor)
}

var versionLine = regexp.MustCompile(`QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads the version in QEMU's --version banner.
func ParseVersion(banner string) (Version, error) {
	m := versionLine.FindStringSubmatch(banner)
	if m == nil {
		return Version{}, fmt.Errorf("no QEMU version in %q", banner)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Patch, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

// VersionCacheDir is where the versions of the QEMU binaries that were
// asked are kept between processes, by file identity: asking QEMU costs
// 20-40 ms, which a short-lived runtime would pay on every sandbox. A
// cache, not state: removing it costs one question per binary.
const VersionCacheDir = "/var/cache/cocoon/qemu"

// versionCacheEntry is one binary's cached version.
type versionCacheEntry struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	Inode   uint64    `json:"inode"`
	Version Version   `json:"version"`
}

// BinaryVersion returns the version of the QEMU binary at path, from the
// cache in cacheDir when it holds this very file (same size, time and
// inode), else by asking it (--version), which it then caches. An empty
// cacheDir caches nothing.
func BinaryVersion(ctx context.Context, path, cacheDir string) (Version, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Version{}, fmt.Errorf("qemu version: %w", err)
	}
	id := versionCacheEntry{Size: fi.Size(), ModTime: fi.ModTime().UTC()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Inode = st.Ino
	}
	sum := sha256.Sum256([]byte(path))
	cache := ""
	if cacheDir != "" {
		cache = filepath.Join(cacheDir, "version-"+hex.EncodeToString(sum[:8])+".json")
		if data, err := os.ReadFile(cache); err == nil {
			var e versionCacheEntry
			if json.Unmarshal(data, &e) == nil && e.Size == id.Size && e.ModTime.Equal(id.ModTime) && e.Inode == id.Inode {
				return e.Version, nil
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Env = Environ(path)
	out, err := cmd.Output()
	if err != nil {
		return Version{}, fmt.Errorf("qemu version: %s --version: %w", path, err)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, fmt.Errorf("qemu version: %w", err)
	}
	if cache != "" {
		id.Version = v
		if data, err := json.Marshal(id); err == nil && os.MkdirAll(cacheDir, 0o700) == nil {
			tmp := cache + ".tmp" + strconv.Itoa(os.Getpid())
			if os.WriteFile(tmp, data, 0o600) == nil {
				_ = os.Rename(tmp, cache)
			}
		}
	}
	return v, nil
}

// Environ is the environment to run the QEMU binary at path with: the
// caller's, and, for a QEMU unpacked beside the system's (its own
// <prefix>/bin, <prefix>/lib/x86_64-linux-gnu/qemu), QEMU_MODULE_DIR
// naming its own modules, which it would otherwise load from the system
// QEMU's directory (another version's: they fail to load).
func Environ(path string) []string {
	env := os.Environ()
	if dir := moduleDir(path); dir != "" {
		env = append(env, "QEMU_MODULE_DIR="+dir)
	}
	return env
}

// moduleDir is the module directory of a QEMU binary outside /usr/bin,
// "" for the system's or when it has none.
func moduleDir(path string) string {
	prefix := filepath.Dir(filepath.Dir(path))
	if prefix == "/usr" || prefix == "/" {
		return ""
	}
	dir := filepath.Join(prefix, "lib", "x86_64-linux-gnu", "qemu")
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return dir
	}
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// DataDir is the firmware directory of a QEMU binary outside /usr/bin
// (<prefix>/share/qemu), "" for the system's or when it has none.
func DataDir(path string) string {
	prefix := filepath.Dir(filepath.Dir(path))
	if prefix == "/usr" || prefix == "/" {
		return ""
	}
	dir := filepath.Join(prefix, "share", "qemu")
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return dir
	}
	return ""
}

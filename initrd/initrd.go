// Package initrd builds the guest's initial RAM disk: a newc cpio archive
// whose /init is cocoon-agent, with the few directories and device nodes the
// agent needs before it mounts anything.
//
// Archives are reproducible: the same inputs give the same bytes, whatever
// the input files' times and owners. Every entry has uid and gid 0 and one
// modification time (0, or SOURCE_DATE_EPOCH), entries are sorted by name and
// numbered in that order, and gzip output carries no name and no time.
package initrd

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// Compression is how the archive is compressed.
type Compression string

const (
	// CompressionNone writes the cpio archive as is: the default, because
	// the kernel unpacks it fastest. Under TCG decompression is emulated
	// instruction by instruction: with a 4.4 MB agent the guest kernel
	// unpacks the plain archive in ~15 ms and the gzipped one in ~130 ms
	// (measured with printk.time=1). The kernel unpacks in parallel with
	// the rest of its init, so boot-to-agent grows by less than that, and
	// the cost grows with the agent (~11 MB once it links libseccomp). The
	// file is ~2.5x larger, which costs little: QEMU reads it into guest
	// memory from the page cache.
	CompressionNone Compression = "none"
	// CompressionGzip compresses with gzip (the guest kernel has RD_GZIP):
	// smaller files, slower boots under TCG.
	CompressionGzip Compression = "gzip"
)

// ParseCompression parses a -compress value.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case CompressionNone, CompressionGzip:
		return c, nil
	case "":
		return CompressionNone, nil
	}
	return "", fmt.Errorf("unknown compression %q (want none or gzip)", s)
}

// Entry is one file of the archive.
type Entry struct {
	// Name is the path inside the archive, without a leading slash.
	Name string
	// Mode holds the type (0 for a regular file, fs.ModeDir,
	// fs.ModeDevice|fs.ModeCharDevice, fs.ModeSymlink) and the permission
	// bits, including fs.ModeSticky.
	Mode fs.FileMode
	// Data is a regular file's contents, or a symlink's target.
	Data []byte
	// Major and Minor are a device node's numbers.
	Major, Minor uint32
}

// AgentEntries returns the entries of the guest image: agent as /init, the
// mount points the agent uses before it can create directories (/dev,
// /proc, /sys, /run, /tmp) and the two device nodes needed before devtmpfs is
// mounted: /dev/console, without which the kernel starts init with no
// stdio, and /dev/null, which the Go runtime opens for missing stdio.
func AgentEntries(agent []byte) []Entry {
	return []Entry{
		{Name: "init", Mode: 0o755, Data: agent},
		{Name: "dev", Mode: fs.ModeDir | 0o755},
		{Name: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Name: "dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Major: 1, Minor: 3},
		{Name: "proc", Mode: fs.ModeDir | 0o555},
		{Name: "sys", Mode: fs.ModeDir | 0o555},
		{Name: "run", Mode: fs.ModeDir | 0o755},
		{Name: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// Write writes entries to w as a newc cpio archive, sorted by name, every
// entry with modification time mtime, compressed as c.
func Write(w io.Writer, entries []Entry, mtime time.Time, c Compression) error {
	if mtime.IsZero() {
		// The zero time.Time lies before 1970 and does not fit a newc
		// header: the kernel would reject the archive.
		mtime = time.Unix(0, 0)
	}
	switch c {
	case CompressionNone, "":
		return writeCpio(w, entries, mtime)
	case CompressionGzip:
		zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return fmt.Errorf("writing initrd: %w", err)
		}
		// The zero Header: no name, no modification time.
		if err := writeCpio(zw, entries, mtime); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("writing initrd: compressing: %w", err)
		}
		return nil
	}
	return fmt.Errorf("writing initrd: unknown compression %q", c)
}

func writeCpio(w io.Writer, entries []Entry, mtime time.Time) error {
	sorted, err := sortEntries(entries)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := cpio.NewWriter(bw)
	for i, e := range sorted {
		ino := int64(i + 1) // deterministic, and never 0 (the trailer's)
		if err := writeEntry(bw, cw, e, ino, mtime); err != nil {
			return fmt.Errorf("writing initrd entry %s: %w", e.Name, err)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("writing initrd: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing initrd: %w", err)
	}
	return nil
}

// sortEntries validates the names and sorts by name, so that a directory
// comes before its contents.
func sortEntries(entries []Entry) ([]Entry, error) {
	sorted := make([]Entry, len(entries))
	copy(sorted, entries)
	seen := make(map[string]bool, len(sorted))
	for _, e := range sorted {
		if e.Name == "" || strings.HasPrefix(e.Name, "/") || path.Clean(e.Name) != e.Name || e.Name == "." || strings.HasPrefix(e.Name, "../") {
			return nil, fmt.Errorf("writing initrd: bad entry name %q", e.Name)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("writing initrd: duplicate entry %q", e.Name)
		}
		seen[e.Name] = true
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	return sorted, nil
}

func writeEntry(raw io.Writer, cw *cpio.Writer, e Entry, ino int64, mtime time.Time) error {
	hdr := &cpio.Header{
		Name:    e.Name,
		Mode:    cpioPerm(e.Mode),
		Links:   1,
		ModTime: mtime,
		Inode:   ino,
	}
	var body []byte
	switch t := e.Mode.Type(); t {
	case 0:
		hdr.Mode |= cpio.TypeReg
		body = e.Data
	case fs.ModeDir:
		hdr.Mode |= cpio.TypeDir
		hdr.Links = 2
	case fs.ModeSymlink:
		hdr.Mode |= cpio.TypeSymlink
		body = e.Data
	case fs.ModeDevice | fs.ModeCharDevice, fs.ModeDevice:
		// cpio.Header has no field for a device's own numbers (rdevmajor and
		// rdevminor), so device nodes get their header from writeDevice.
		typ := cpio.FileMode(cpio.TypeBlock)
		if t&fs.ModeCharDevice != 0 {
			typ = cpio.TypeChar
		}
		hdr.Mode |= typ
		if err := cw.Flush(); err != nil { // pads the previous entry
			return err
		}
		return writeDevice(raw, hdr, e.Major, e.Minor)
	default:
		return fmt.Errorf("unsupported file type %v", t)
	}
	hdr.Size = int64(len(body))
	if err := cw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := cw.Write(body); err != nil {
		return err
	}
	return nil
}

func cpioPerm(m fs.FileMode) cpio.FileMode {
	p := cpio.FileMode(m.Perm())
	if m&fs.ModeSticky != 0 {
		p |= cpio.ModeSticky
	}
	if m&fs.ModeSetuid != 0 {
		p |= cpio.ModeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		p |= cpio.ModeSetgid
	}
	return p
}

// writeDevice writes the newc header of a device node (it has no data).
// Fields, all 8 hex digits: ino, mode, uid, gid, nlink, mtime, filesize,
// devmajor, devminor, rdevmajor, rdevminor, namesize, check; then the name,
// NUL-terminated, padded to 4 bytes.
func writeDevice(w io.Writer, hdr *cpio.Header, major, minor uint32) error {
	var b strings.Builder
	b.WriteString("070701")
	for _, v := range []int64{
		hdr.Inode, int64(hdr.Mode), int64(hdr.Uid), int64(hdr.Guid), int64(hdr.Links),
		hdr.ModTime.Unix(), 0, 0, 0, int64(major), int64(minor), int64(len(hdr.Name) + 1), 0,
	} {
		fmt.Fprintf(&b, "%08X", v)
	}
	b.WriteString(hdr.Name)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ModTime returns the modification time for every entry: SOURCE_DATE_EPOCH
// (seconds since 1970, given as epoch) when set, else the Unix epoch.
func ModTime(epoch string) (time.Time, error) {
	if epoch == "" {
		return time.Unix(0, 0), nil
	}
	s, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || s < 0 || s > 0xFFFFFFFF {
		return time.Time{}, fmt.Errorf("bad SOURCE_DATE_EPOCH %q", epoch)
	}
	return time.Unix(s, 0), nil
}

// Options says what Build builds.
type Options struct {
	// AgentPath is the cocoon-agent binary (static) that becomes /init.
	AgentPath string
	// Output is the file to write.
	Output string
	// Compression defaults to CompressionNone.
	Compression Compression
	// ModTime is every entry's modification time; see ModTime.
	ModTime time.Time
	// Version, when set, is written to VersionFile: the agent's build
	// version, which `cocoon-runtime env` and `check` read back without
	// booting a VM.
	Version string
}

// VersionFile is the archive entry that holds the agent's build version.
const VersionFile = "cocoon-agent.version"

// Build writes the guest image to o.Output atomically: to a temporary file in
// the same directory, synced, then renamed over the output.
func Build(o Options) (err error) {
	agent, err := os.ReadFile(o.AgentPath)
	if err != nil {
		return fmt.Errorf("building initrd: reading agent: %w", err)
	}
	if len(agent) < 4 || string(agent[:4]) != "\x7fELF" {
		return fmt.Errorf("building initrd: %s is not an ELF executable", o.AgentPath)
	}
	dir := filepath.Dir(o.Output)
	f, err := os.CreateTemp(dir, "."+filepath.Base(o.Output)+".tmp*")
	if err != nil {
		return fmt.Errorf("building initrd: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	entries := AgentEntries(agent)
	if o.Version != "" {
		entries = append(entries, Entry{Name: VersionFile, Mode: 0o644, Data: []byte(o.Version + "\n")})
	}
	if err := Write(f, entries, o.ModTime, o.Compression); err != nil {
		return fmt.Errorf("building initrd: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("building initrd: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("building initrd: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("building initrd: %w", err)
	}
	if err := os.Rename(f.Name(), o.Output); err != nil {
		return fmt.Errorf("building initrd: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

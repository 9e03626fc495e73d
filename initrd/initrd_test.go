package initrd

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

// newcEntry is one entry as the kernel's unpacker sees it.
type newcEntry struct {
	name                 string
	ino, mode, uid, gid  uint64
	nlink, mtime         uint64
	rdevMajor, rdevMinor uint64
	devMajor, devMinor   uint64
	data                 []byte
}

// parseNewc parses a newc archive independently of the cpio package, with
// every header field (the package does not read rdevmajor/rdevminor).
func parseNewc(t *testing.T, b []byte) []newcEntry {
	t.Helper()
	var entries []newcEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("bad field %d at %d: %v", i, off, err)
			}
			return v
		}
		e := newcEntry{
			ino: field(0), mode: field(1), uid: field(2), gid: field(3), nlink: field(4), mtime: field(5),
			devMajor: field(7), devMinor: field(8), rdevMajor: field(9), rdevMinor: field(10),
		}
		size, namesize := int(field(6)), int(field(11))
		if field(12) != 0 {
			t.Fatalf("check field set at %d", off)
		}
		off += 110
		e.name = string(b[off : off+namesize-1])
		if b[off+namesize-1] != 0 {
			t.Fatalf("name of %q not NUL-terminated", e.name)
		}
		off += namesize
		align()
		e.data = b[off : off+size]
		off += size
		align()
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return entries
		}
		entries = append(entries, e)
	}
}

func fakeAgent() []byte {
	b := []byte("\x7fELF")
	for i := range 10000 {
		b = append(b, byte(i*7))
	}
	return b
}

func build(t *testing.T, agent []byte, mtime time.Time, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, AgentEntries(agent), mtime, c); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestContents(t *testing.T) {
	agent := fakeAgent()
	entries := parseNewc(t, build(t, agent, time.Unix(0, 0), CompressionNone))

	const (
		dir  = 0o040000
		reg  = 0o100000
		char = 0o020000
	)
	want := []struct {
		name         string
		mode         uint64
		major, minor uint64
	}{
		{"dev", dir | 0o755, 0, 0},
		{"dev/console", char | 0o600, 5, 1},
		{"dev/null", char | 0o666, 1, 3},
		{"init", reg | 0o755, 0, 0},
		{"proc", dir | 0o555, 0, 0},
		{"run", dir | 0o755, 0, 0},
		{"sys", dir | 0o555, 0, 0},
		{"tmp", dir | 0o1777, 0, 0},
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(entries), len(want), entries)
	}
	for i, w := range want {
		e := entries[i]
		if e.name != w.name || e.mode != w.mode || e.rdevMajor != w.major || e.rdevMinor != w.minor {
			t.Errorf("entry %d = %s mode %o rdev %d:%d, want %s mode %o rdev %d:%d",
				i, e.name, e.mode, e.rdevMajor, e.rdevMinor, w.name, w.mode, w.major, w.minor)
		}
		if e.uid != 0 || e.gid != 0 || e.mtime != 0 {
			t.Errorf("%s: uid %d gid %d mtime %d, want zeros", e.name, e.uid, e.gid, e.mtime)
		}
		if e.ino != uint64(i+1) {
			t.Errorf("%s: inode %d, want %d", e.name, e.ino, i+1)
		}
		if e.name != "init" && len(e.data) != 0 {
			t.Errorf("%s has %d bytes of data", e.name, len(e.data))
		}
	}
	if !bytes.Equal(entries[3].data, agent) {
		t.Error("/init is not the agent")
	}
}

func TestReadableByCpioPackage(t *testing.T) {
	r := cpio.NewReader(bytes.NewReader(build(t, fakeAgent(), time.Unix(0, 0), CompressionNone)))
	var names []string
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if got := fmt.Sprint(names); got != "[dev dev/console dev/null init proc run sys tmp]" {
		t.Errorf("names = %s", got)
	}
}

func TestReproducible(t *testing.T) {
	agent := fakeAgent()
	for _, c := range []Compression{CompressionNone, CompressionGzip} {
		a := build(t, agent, time.Unix(0, 0), c)
		b := build(t, agent, time.Unix(0, 0), c)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two builds differ", c)
		}
	}
	// Entry order does not matter.
	e := AgentEntries(agent)
	for i, j := 0, len(e)-1; i < j; i, j = i+1, j-1 {
		e[i], e[j] = e[j], e[i]
	}
	var buf bytes.Buffer
	if err := Write(&buf, e, time.Unix(0, 0), CompressionNone); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), build(t, agent, time.Unix(0, 0), CompressionNone)) {
		t.Error("reordered entries give a different archive")
	}
}

func TestBuildIgnoresSourceFileTimes(t *testing.T) {
	dir := t.TempDir()
	agentPath := filepath.Join(dir, "cocoon-agent")
	if err := os.WriteFile(agentPath, fakeAgent(), 0o700); err != nil {
		t.Fatal(err)
	}
	var outputs [][]byte
	for i, mtime := range []time.Time{time.Unix(1000, 0), time.Now()} {
		if err := os.Chtimes(agentPath, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, fmt.Sprintf("initrd%d.img", i))
		if err := Build(Options{AgentPath: agentPath, Output: out, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, b)
	}
	if !bytes.Equal(outputs[0], outputs[1]) {
		t.Error("the agent's modification time changed the archive")
	}
}

func TestSourceDateEpoch(t *testing.T) {
	mtime, err := ModTime("1700000000")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range parseNewc(t, build(t, fakeAgent(), mtime, CompressionNone)) {
		if e.mtime != 1700000000 {
			t.Errorf("%s: mtime %d", e.name, e.mtime)
		}
	}
	if m, err := ModTime(""); err != nil || m.Unix() != 0 {
		t.Errorf("ModTime(\"\") = %v, %v", m, err)
	}
	for _, bad := range []string{"x", "-1", "1e9", "99999999999"} {
		if _, err := ModTime(bad); err == nil {
			t.Errorf("ModTime(%q) accepted", bad)
		}
	}
}

func TestGzip(t *testing.T) {
	agent := fakeAgent()
	plain := build(t, agent, time.Unix(0, 0), CompressionNone)
	gz := build(t, agent, time.Unix(0, 0), CompressionGzip)
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header has name %q, time %v", zr.Name, zr.ModTime)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Error("gunzipped archive differs from the uncompressed one")
	}
}

func TestBuildAtomic(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Build(Options{AgentPath: notELF, Output: out}); err == nil {
		t.Fatal("built an initrd from a non-ELF agent")
	}
	if err := Build(Options{AgentPath: filepath.Join(dir, "missing"), Output: out}); err == nil {
		t.Fatal("built an initrd from a missing agent")
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Error("a failed build touched the output")
	}
	agent := filepath.Join(dir, "agent")
	if err := os.WriteFile(agent, fakeAgent(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Build(Options{AgentPath: agent, Output: out, Compression: CompressionGzip}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("output mode %v", fi.Mode())
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestBadEntries(t *testing.T) {
	tests := map[string][]Entry{
		"absolute":  {{Name: "/init"}},
		"dotdot":    {{Name: "../init"}},
		"unclean":   {{Name: "dev//null"}},
		"empty":     {{Name: ""}},
		"duplicate": {{Name: "init"}, {Name: "init"}},
		"socket":    {{Name: "s", Mode: os.ModeSocket}},
	}
	for name, entries := range tests {
		t.Run(name, func(t *testing.T) {
			if err := Write(io.Discard, entries, time.Unix(0, 0), CompressionNone); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestParseCompression(t *testing.T) {
	for in, want := range map[string]Compression{"": CompressionNone, "none": CompressionNone, "gzip": CompressionGzip} {
		if got, err := ParseCompression(in); err != nil || got != want {
			t.Errorf("ParseCompression(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseCompression("xz"); err == nil {
		t.Error("accepted xz")
	}
}

func TestSymlink(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, []Entry{{Name: "bin/sh", Mode: os.ModeSymlink | 0o777, Data: []byte("busybox")}, {Name: "bin", Mode: os.ModeDir | 0o755}}, time.Unix(0, 0), CompressionNone); err != nil {
		t.Fatal(err)
	}
	e := parseNewc(t, buf.Bytes())
	if len(e) != 2 || e[1].name != "bin/sh" || e[1].mode != 0o120777 || string(e[1].data) != "busybox" {
		t.Errorf("entries = %+v", e)
	}
}

// A zero time.Time (an unset Options.ModTime) must not produce an archive the
// kernel rejects: it means the epoch.
func TestZeroModTimeIsEpoch(t *testing.T) {
	for _, e := range parseNewc(t, build(t, fakeAgent(), time.Time{}, CompressionNone)) {
		if e.mtime != 0 {
			t.Fatalf("%s: mtime %d, want 0", e.name, e.mtime)
		}
	}
}

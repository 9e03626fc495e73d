package qemu

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

func TestParseVersion(t *testing.T) {
	for banner, want := range map[string]Version{
		"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright": {7, 2, 22},
		"QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)":       {10, 0, 2},
		"QEMU emulator version 8.2.0":                                               {8, 2, 0},
		"QEMU emulator version 9.1":                                                 {9, 1, 0},
	} {
		if got, err := ParseVersion(banner); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", banner, got, err, want)
		}
	}
	if _, err := ParseVersion("qemu-img version 7.2.0"); err == nil {
		t.Error("a banner without the emulator's version parsed")
	}
	for v, want := range map[Version][2]bool{
		{7, 2, 22}: {false, false},
		{8, 2, 0}:  {true, false},
		{9, 0, 1}:  {true, false},
		{9, 1, 0}:  {true, true},
		{10, 0, 2}: {true, true},
	} {
		if got := [2]bool{v.ReadOnlyTemplates(), v.fileMigration()}; got != want {
			t.Errorf("%v: read-only templates, file migration %v, want %v", v, got, want)
		}
	}
}

// TestBinaryVersionCache: a binary is asked once; its version is found in
// the cache until the file changes.
func TestBinaryVersionCache(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "qemu")
	counter := filepath.Join(dir, "asked")
	write := func(v string) {
		script := "#!/bin/sh\necho x >> " + counter + "\necho 'QEMU emulator version " + v + "'\n"
		if err := os.WriteFile(bin+".new", []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(bin+".new", bin); err != nil {
			t.Fatal(err)
		}
	}
	write("9.2.1")
	cache := filepath.Join(dir, "cache")
	for range 3 {
		if v, err := BinaryVersion(context.Background(), bin, cache); err != nil || v != (Version{9, 2, 1}) {
			t.Fatalf("%v, %v", v, err)
		}
	}
	if n := asked(t, counter); n != 1 {
		t.Errorf("asked %d times, want once", n)
	}
	write("10.0.2")
	if v, err := BinaryVersion(context.Background(), bin, cache); err != nil || v != (Version{10, 0, 2}) {
		t.Fatalf("after an upgrade: %v, %v", v, err)
	}
	if n := asked(t, counter); n != 2 {
		t.Errorf("asked %d times after an upgrade, want twice", n)
	}
}

func asked(t *testing.T, counter string) int {
	t.Helper()
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "x")
}

// TestTemplateByVersion: a clone of QEMU 8.2 or later maps its template
// from a file opened read-only, and Landlock lets it read the file only;
// QEMU 9.1 and later load the device state from a file in an fdset; QEMU
// 7.2 does neither.
func TestTemplateByVersion(t *testing.T) {
	cfg := baseConfig(MachineMicroVM)
	cfg.Template = &hypervisor.Template{MemoryFile: "/t/memory", StateFile: "/t/state", Restore: true}
	for _, tc := range []struct {
		v            Version
		memory       string
		addFD, rwMem bool
	}{
		{Version{7, 2, 22}, "mem-path=/t/memory,share=off", false, true},
		{Version{8, 2, 0}, "mem-path=/t/memory,share=off,readonly=on,rom=off", false, false},
		{Version{10, 0, 2}, "mem-path=/t/memory,share=off,readonly=on,rom=off", true, false},
	} {
		f := baseFeatures
		f.Version = tc.v
		args, err := CommandLine(cfg, f)
		if err != nil {
			t.Fatal(err)
		}
		line := strings.Join(args, " ")
		if !strings.Contains(line, tc.memory+" ") {
			t.Errorf("%v: no %q in %s", tc.v, tc.memory, line)
		}
		if got := slices.Contains(args, "-add-fd"); got != tc.addFD {
			t.Errorf("%v: -add-fd %v, want %v", tc.v, got, tc.addFD)
		}
		c := vmConfinement(cfg, DefaultBinary, f)
		if got := slices.Contains(c.readWrite, "/t/memory"); got != tc.rwMem {
			t.Errorf("%v: the memory file writable %v, want %v", tc.v, got, tc.rwMem)
		}
		if !tc.rwMem && !slices.Contains(c.readOnly, "/t/memory") {
			t.Errorf("%v: the memory file is not readable", tc.v)
		}
	}
}

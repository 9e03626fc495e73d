package container

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWritePidFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pid")
	if err := WritePidFile(p, 1234); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil || string(data) != "1234" {
		t.Fatalf("%q %v", data, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temporary file left: %v", entries)
	}
}

func TestCheckPidFile(t *testing.T) {
	dir := t.TempDir()
	if err := checkPidFile(filepath.Join(dir, "pid")); err != nil {
		t.Fatal(err)
	}
	if err := checkPidFile(filepath.Join(dir, "missing", "pid")); err == nil {
		t.Fatal("a pid file in a missing directory passed")
	}
	if err := checkPidFile(""); err != nil {
		t.Fatal(err)
	}
}

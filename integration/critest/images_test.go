package critest

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
)

// TestLayerWriter: a layer lists the directories above its files first,
// once; hard links carry their target's mode (unpacking applies a link's
// mode to the shared inode); the same content makes the same digest.
func TestLayerWriter(t *testing.T) {
	build := func() *layerWriter {
		var l layerWriter
		l.dir("bin", 0o755)
		l.file("bin/busybox", 0o755, []byte("#!"))
		l.link("bin/sh", "bin/busybox", 0o755)
		l.file("usr/local/bin/nnp", 0o4755, []byte("x"))
		return &l
	}
	layer, err := build().layer()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%c %s %o %s %d/%d", h.Typeflag, h.Name, h.Mode, h.Linkname, h.Uid, h.Gid))
	}
	want := []string{
		"5 bin/ 755  0/0",
		"0 bin/busybox 755  0/0",
		"1 bin/sh 755 bin/busybox 0/0",
		"5 usr/ 755  0/0",
		"5 usr/local/ 755  0/0",
		"5 usr/local/bin/ 755  0/0",
		"0 usr/local/bin/nnp 4755  0/0",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries\n%q\nwant\n%q", got, want)
	}
	again, err := build().layer()
	if err != nil {
		t.Fatal(err)
	}
	d1, err1 := layer.Digest()
	d2, err2 := again.Digest()
	if err1 != nil || err2 != nil || d1 != d2 {
		t.Errorf("the same content made layers %v (%v) and %v (%v)", d1, err1, d2, err2)
	}
	var empty layerWriter
	if _, err := empty.layer(); err == nil {
		t.Error("an empty layer: no error")
	}
}

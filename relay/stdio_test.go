package relay_test

import (
	"os"
	"testing"

	"github.com/cocoon-containers/cocoon/relay"
)

func TestIsAttached(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	closed, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	zero, err := os.Open("/dev/zero") // a character device, but not /dev/null
	if err != nil {
		t.Fatal(err)
	}
	defer zero.Close()
	file, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tc := range []struct {
		name string
		f    *os.File
		want bool
	}{
		{"nil", nil, false},
		{"dev null", null, false},
		{"closed", closed, false},
		{"pipe", r, true},
		{"dev zero", zero, true},
		{"file", file, true},
	} {
		if got := relay.IsAttached(tc.f); got != tc.want {
			t.Errorf("%s: IsAttached = %v, want %v", tc.name, got, tc.want)
		}
	}
	c := relay.AttachedStdio(null, w, file)
	if c.GetStdin() || !c.GetStdout() || !c.GetStderr() {
		t.Errorf("AttachedStdio = %v", c)
	}
}

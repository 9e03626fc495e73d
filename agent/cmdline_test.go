package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseKernelParams(t *testing.T) {
	tests := map[string]struct {
		cmdline string
		want    KernelParams
	}{
		"empty": {cmdline: "", want: KernelParams{}},
		"typical": {
			cmdline: "console=ttyS0 panic=1 cocoon.log=debug quiet\n",
			want:    KernelParams{"console": "ttyS0", "panic": "1", "cocoon.log": "debug", "quiet": ""},
		},
		"value with equals": {
			cmdline: "root=PARTUUID=abc ro",
			want:    KernelParams{"root": "PARTUUID=abc", "ro": ""},
		},
		"quoted value": {
			cmdline: `a="b c" d`,
			want:    KernelParams{"a": "b c", "d": ""},
		},
		"quoted word": {
			cmdline: `"a=b c"  d=e`,
			want:    KernelParams{"a": "b c", "d": "e"},
		},
		"dashes are underscores": {
			cmdline: "cocoon.vsock-port=2000",
			want:    KernelParams{"cocoon.vsock_port": "2000"},
		},
		"last wins": {
			cmdline: "cocoon.log=info cocoon.log=trace",
			want:    KernelParams{"cocoon.log": "trace"},
		},
		"init args after dashes": {
			cmdline: "panic=1 -- cocoon.log=debug init",
			want:    KernelParams{"panic": "1"},
		},
		"tabs and multiple spaces": {
			cmdline: "a=1\t\tb=2    c",
			want:    KernelParams{"a": "1", "b": "2", "c": ""},
		},
		"empty value": {
			cmdline: "a= b",
			want:    KernelParams{"a": "", "b": ""},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := ParseKernelParams(tt.cmdline)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseKernelParams(%q) = %v, want %v", tt.cmdline, got, tt.want)
			}
		})
	}
}

func TestKernelParamsGet(t *testing.T) {
	p := ParseKernelParams("cocoon.vsock_port=7 cocoon.transport=vsock flag")
	if v, ok := p.Get("cocoon.vsock-port"); !ok || v != "7" {
		t.Errorf("Get(cocoon.vsock-port) = %q, %v", v, ok)
	}
	if v, ok := p.Get("flag"); !ok || v != "" {
		t.Errorf("Get(flag) = %q, %v", v, ok)
	}
	if _, ok := p.Get("missing"); ok {
		t.Error("Get(missing) reported a value")
	}
}

func TestReadKernelParams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(path, []byte("console=ttyS0 cocoon.log=debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := ReadKernelParams(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Get("cocoon.log"); v != "debug" {
		t.Errorf("cocoon.log = %q", v)
	}
	if _, err := ReadKernelParams(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("reading a missing file succeeded")
	}
}

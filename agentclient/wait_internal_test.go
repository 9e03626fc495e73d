package agentclient

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	ms := time.Millisecond
	tests := map[string]struct {
		b    Backoff
		want []time.Duration
	}{
		"default": {
			b:    Backoff{},
			want: []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 500 * ms, 500 * ms, 500 * ms},
		},
		"triple, capped": {
			b:    Backoff{Initial: 10 * ms, Max: 100 * ms, Factor: 3},
			want: []time.Duration{10 * ms, 30 * ms, 90 * ms, 100 * ms, 100 * ms},
		},
		"constant": {
			b:    Backoff{Initial: 7 * ms, Factor: 1},
			want: []time.Duration{7 * ms, 7 * ms, 7 * ms},
		},
		"initial above max": {
			b:    Backoff{Initial: time.Second, Max: 100 * ms, Factor: 2},
			want: []time.Duration{100 * ms, 100 * ms},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for n, want := range tc.want {
				if got := tc.b.Delay(n); got != want {
					t.Errorf("Delay(%d) = %v, want %v", n, got, want)
				}
			}
		})
	}
	if got := DefaultBackoff().Delay(1 << 20); got != 500*ms {
		t.Errorf("Delay of a huge attempt number = %v, want the cap", got)
	}
}

func TestOptionsScale(t *testing.T) {
	o := Options{Scale: 10, CallTimeout: 3 * time.Second}
	if got := o.callTimeout(); got != 30*time.Second {
		t.Errorf("call timeout = %v, want 30s", got)
	}
	if got := o.bootTimeout(); got != 10*DefaultBootTimeout {
		t.Errorf("boot timeout = %v, want 10 × default", got)
	}
	if got := (Options{}).attemptTimeout(); got != DefaultAttemptTimeout {
		t.Errorf("attempt timeout = %v, want the default", got)
	}
}

func TestConsoleTail(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var many strings.Builder
	for i := range 100 {
		fmt.Fprintf(&many, "line %d\r\n", i)
	}
	long := strings.Repeat("x", 3000) + "\nlast line\n"

	tests := map[string]struct {
		path string
		want string
	}{
		"short":             {write("short", "one\ntwo\n"), "one\ntwo"},
		"last 20 lines":     {write("many", many.String()), strings.TrimSpace(strings.ReplaceAll(many.String()[strings.Index(many.String(), "line 80"):], "\r", ""))},
		"cut line dropped":  {write("long", long), "last line"},
		"control chars":     {write("ctl", "a\x1b[0mb\x00c\n\tindented\n"), "a[0mbc\n\tindented"},
		"empty":             {write("empty", ""), ""},
		"no trailing break": {write("nobreak", "partial"), "partial"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := consoleTail(tc.path, 2048, 20)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
	if _, err := consoleTail(filepath.Join(dir, "missing"), 2048, 20); err == nil {
		t.Error("no error for a missing file")
	}
}

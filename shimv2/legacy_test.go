package shimv2

import (
	"bytes"
	"context"
	"strings"
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
)

// TestRunLegacyStart: the start command of containerd 2.3 and later
// (bootstrap parameters on stdin) and every other command go to the shim
// library, with stdin given back; an older containerd's start, which sends
// its runtime options or nothing, does not (it fails here only for want of
// a bundle).
func TestRunLegacyStart(t *testing.T) {
	ctx := context.Background()
	args := []string{"-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock", "-publish-binary", "/usr/bin/containerd", "-id", "c1", "-debug", "start"}
	params, err := proto.Marshal(&bootapi.BootstrapParams{InstanceID: "c1", Namespace: "k8s.io"})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := typeurl.MarshalAny(&runtimeoptions.Options{ConfigPath: "/etc/cocoon/configuration.toml"})
	if err != nil {
		t.Fatal(err)
	}
	legacyOpts, err := proto.Marshal(typeurl.MarshalProto(opts))
	if err != nil {
		t.Fatal(err)
	}
	otherID, err := proto.Marshal(&bootapi.BootstrapParams{InstanceID: "c2", Namespace: "k8s.io"})
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	for name, tc := range map[string]struct {
		args    []string
		stdin   []byte
		handled bool
	}{
		"bootstrap":          {args, params, false},
		"delete":             {append(args[:len(args)-1:len(args)-1], "delete"), nil, false},
		"serve":              {args[:len(args)-1], nil, false},
		"info":               {[]string{"-info"}, legacyOpts, false},
		"runtime options":    {args, legacyOpts, true},
		"no stdin":           {args, nil, true},
		"another shim's ids": {args, otherID, true},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			stdin := bytes.NewReader(tc.stdin)
			handled, read, err := RunLegacyStart(ctx, tc.args, stdin, &out)
			if handled != tc.handled {
				t.Fatalf("handled = %v (%v), want %v", handled, err, tc.handled)
			}
			// What it read of stdin, and what is left there, make stdin whole.
			if rest := tc.stdin[len(tc.stdin)-stdin.Len():]; !handled && (err != nil || !bytes.Equal(append(read, rest...), tc.stdin) || out.Len() > 0) {
				t.Errorf("not handled: read %q, left %q, wrote %q, %v; want stdin given back", read, rest, out.String(), err)
			}
			if handled && (err == nil || !strings.Contains(err.Error(), "config.json")) {
				t.Errorf("legacy start without a bundle: %v, want an error naming config.json", err)
			}
		})
	}
}

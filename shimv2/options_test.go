package shimv2

import (
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestConfigPath: the configuration that CRI's runtime options name reaches
// the shim as containerd marshals it; other options name none.
func TestConfigPath(t *testing.T) {
	marshal := func(v any) *anypb.Any {
		a, err := typeurl.MarshalAny(v)
		if err != nil {
			t.Fatal(err)
		}
		return &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()}
	}
	for name, tc := range map[string]struct {
		opts *anypb.Any
		want string
	}{
		"none":         {nil, ""},
		"CRI options":  {marshal(&runtimeoptions.Options{ConfigPath: "/etc/cocoon/small.toml"}), "/etc/cocoon/small.toml"},
		"no path":      {marshal(&runtimeoptions.Options{}), ""},
		"runc options": {marshal(&runcoptions.Options{BinaryName: "runc"}), ""},
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := configPath(tc.opts); err != nil || got != tc.want {
				t.Errorf("configPath = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	broken := &anypb.Any{TypeUrl: marshal(&runtimeoptions.Options{}).GetTypeUrl(), Value: []byte{0xff}}
	if _, err := configPath(broken); err == nil {
		t.Error("undecodable runtime options: no error")
	}
}

package shimv2

import (
	"fmt"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// configPath is the cocoon configuration file that containerd's runtime
// options name, as Kata Containers takes its own: CRI's
// `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.<handler>.options]
// ConfigPath = "..."`, which lets several handlers run cocoon with
// different configurations. "" when the options name none, or are of
// another type.
func configPath(opts *anypb.Any) (string, error) {
	if opts.GetTypeUrl() == "" || !typeurl.Is(opts, &runtimeoptions.Options{}) {
		return "", nil
	}
	v, err := typeurl.UnmarshalAny(opts)
	if err != nil {
		return "", fmt.Errorf("decoding the runtime options: %w", err)
	}
	o, ok := v.(*runtimeoptions.Options)
	if !ok {
		return "", fmt.Errorf("decoding the runtime options: %T is not runtimeoptions.v1.Options", v)
	}
	return o.ConfigPath, nil
}

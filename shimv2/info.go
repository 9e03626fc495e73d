package shimv2

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/cocoon-containers/cocoon/oci"
)

func init() {
	// The type URL that containerd 2.x gives the runtime-spec's features
	// document, which it decodes from RuntimeInfo.Features.
	typeurl.Register(&features.Features{}, "types.containerd.io", "opencontainers/runtime-spec",
		strconv.Itoa(specs.VersionMajor), "features", "Features")
}

// InfoFlag is the flag with which containerd 2.x runs a shim binary to
// learn what its runtime supports (runtime introspection): the shim writes
// a RuntimeInfo, protobuf-encoded, to stdout and exits.
const InfoFlag = "info"

// Info is the shim's RuntimeInfo at version: its runtime name and version,
// the runtime options containerd sent on options (a protobuf Any, possibly
// empty), given back as runc's shim does, and the runtime-spec features
// document of `cocoon-runtime features`.
func Info(ctx context.Context, options io.Reader, version string) (*apitypes.RuntimeInfo, error) {
	info := &apitypes.RuntimeInfo{
		Name:    RuntimeName,
		Version: &apitypes.RuntimeVersion{Version: version},
	}
	data, err := io.ReadAll(options)
	if err != nil {
		return nil, fmt.Errorf("runtime info: reading the runtime options: %w", err)
	}
	if len(data) > 0 {
		var opts anypb.Any
		if err := proto.Unmarshal(data, &opts); err != nil {
			return nil, fmt.Errorf("runtime info: the runtime options are not a protobuf Any: %w", err)
		}
		info.Options = &opts
	}
	f, err := typeurl.MarshalAny(oci.Features(version))
	if err != nil {
		return nil, fmt.Errorf("runtime info: %w", err)
	}
	info.Features = &anypb.Any{TypeUrl: f.GetTypeUrl(), Value: f.GetValue()}
	return info, nil
}

// FeaturesCommand is the command with which CRI-O runs every handler's
// binary, the shim's too, to learn what it supports (as `runc features`).
const FeaturesCommand = "features"

// WriteFeatures writes the runtime-spec features document of `cocoon-runtime
// features`, as JSON, to w: the answer to FeaturesCommand.
func WriteFeatures(w io.Writer, version string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	if err := enc.Encode(oci.Features(version)); err != nil {
		return fmt.Errorf("runtime features: %w", err)
	}
	return nil
}

// WriteInfo writes Info, protobuf-encoded, to w: the answer to -info.
func WriteInfo(ctx context.Context, w io.Writer, options io.Reader, version string) error {
	info, err := Info(ctx, options, version)
	if err != nil {
		return err
	}
	data, err := proto.Marshal(info)
	if err != nil {
		return fmt.Errorf("runtime info: %w", err)
	}
	_, err = w.Write(data)
	return err
}

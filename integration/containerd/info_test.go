//go:build integration

package containerd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	apitypes "github.com/containerd/containerd/api/types"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
)

// featuresTypeURL is the type URL under which containerd 2.x decodes the
// features document of a RuntimeInfo.
const featuresTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"

// TestRuntimeInfo runs the shim binary as containerd 2.x does to learn
// what a runtime supports (`containerd-shim-cocoon-v2 -info`, the runtime
// options on stdin, a protobuf RuntimeInfo on stdout): its name and
// version, the options given back, and the features document of
// `cocoon-runtime features`, recursive read-only mounts included.
func TestRuntimeInfo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	opts, err := anypb.New(&runtimeoptions.Options{ConfigPath: "/etc/cocoon/configuration.toml"})
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := proto.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(daemon.Bin, "containerd-shim-cocoon-v2"), "-info")
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("-info: %v: %s", err, stderr.String())
	}
	var info apitypes.RuntimeInfo
	if err := proto.Unmarshal(stdout, &info); err != nil {
		t.Fatalf("-info's output is no RuntimeInfo: %v", err)
	}
	if info.Name != containerdtest.Runtime || info.Version.GetVersion() == "" {
		t.Errorf("name %q, version %v", info.Name, info.Version)
	}
	if !proto.Equal(info.Options, opts) {
		t.Errorf("options %v, want %v back", info.Options, opts)
	}
	if info.Features.GetTypeUrl() != featuresTypeURL {
		t.Fatalf("features of type %q, want %q", info.Features.GetTypeUrl(), featuresTypeURL)
	}
	var got features.Features
	if err := json.Unmarshal(info.Features.GetValue(), &got); err != nil {
		t.Fatalf("features: %v", err)
	}
	if !slices.Contains(got.MountOptions, "rro") {
		t.Errorf("mount options %v: no rro", got.MountOptions)
	}

	out, err := exec.CommandContext(ctx, filepath.Join(daemon.Bin, "cocoon-runtime"), "features").Output()
	if err != nil {
		t.Fatalf("cocoon-runtime features: %v", err)
	}
	var want features.Features
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("-info's features differ from cocoon-runtime features:\n%s\n%s", info.Features.GetValue(), out)
	}
	if v := want.Annotations["io.github.cocoon-containers.cocoon.version"]; v != info.Version.GetVersion() {
		t.Errorf("shim version %q, cocoon-runtime's %q", info.Version.GetVersion(), v)
	}

	// Bad options: one line on stderr, a non-zero exit, nothing on stdout.
	cmd = exec.CommandContext(ctx, filepath.Join(daemon.Bin, "containerd-shim-cocoon-v2"), "-info")
	cmd.Stdin = bytes.NewReader([]byte("not protobuf \xff\xff"))
	stderr.Reset()
	cmd.Stderr = &stderr
	stdout, err = cmd.Output()
	if err == nil || len(stdout) != 0 || bytes.Count(bytes.TrimSpace(stderr.Bytes()), []byte("\n")) != 0 {
		t.Errorf("bad options: %v, stdout %q, stderr %q", err, stdout, stderr.String())
	}
}

package shimv2

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/cocoon-containers/cocoon/oci"
)

func TestInfo(t *testing.T) {
	ctx := context.Background()
	opts := &anypb.Any{TypeUrl: "example.com/Options", Value: []byte{1, 2, 3}}
	in, err := proto.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteInfo(ctx, &out, bytes.NewReader(in), "1.2.3"); err != nil {
		t.Fatal(err)
	}
	var info apitypes.RuntimeInfo
	if err := proto.Unmarshal(out.Bytes(), &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != RuntimeName || info.Version.GetVersion() != "1.2.3" || !proto.Equal(info.Options, opts) {
		t.Errorf("info %v", &info)
	}
	// As containerd 2.x decodes it.
	v, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := v.(*features.Features)
	if !ok {
		t.Fatalf("features of type %T", v)
	}
	if !reflect.DeepEqual(f, oci.Features("1.2.3")) {
		got, _ := json.Marshal(f)
		t.Errorf("features %s", got)
	}

	// No options: none given back.
	info2, err := Info(ctx, strings.NewReader(""), "1.2.3")
	if err != nil || info2.Options != nil {
		t.Errorf("without options: %v, %v", info2, err)
	}
	if _, err := Info(ctx, strings.NewReader("\xff\xff"), "1.2.3"); err == nil {
		t.Error("options that are not a protobuf Any: no error")
	}
}

// TestFeatures: what the shim answers CRI-O's `features` is cocoon-runtime's
// document.
func TestFeatures(t *testing.T) {
	var out bytes.Buffer
	if err := WriteFeatures(&out, "1.2.3"); err != nil {
		t.Fatal(err)
	}
	var got features.Features
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("features: %v: %s", err, out.String())
	}
	if want := oci.Features("1.2.3"); !reflect.DeepEqual(&got, want) {
		t.Errorf("features %+v, want %+v", got, want)
	}
}

package oci

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// TestFeaturesMountOptions: the mount options offered are those the
// guest's libcontainer knows, recursive read-only among them.
func TestFeaturesMountOptions(t *testing.T) {
	f := Features("1.2.3")
	known := specconv.KnownMountOptions()
	for _, o := range f.MountOptions {
		if !slices.Contains(known, o) {
			t.Errorf("mount option %q is offered, and the guest's libcontainer does not know it", o)
		}
	}
	for _, o := range known {
		if !slices.Contains(f.MountOptions, o) {
			t.Errorf("the guest's libcontainer knows mount option %q, which is not offered", o)
		}
	}
	if !slices.Contains(f.MountOptions, "rro") {
		t.Error(`"rro" is not offered`)
	}
}

// TestFeaturesDocument: the document is the runtime-spec's, with the
// version given and what cannot cross into a VM turned off.
func TestFeaturesDocument(t *testing.T) {
	data, err := json.Marshal(Features("1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	var f features.Features
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if f.Annotations[AnnotationVersion] != "1.2.3" || f.OCIVersionMin != "1.0.0" || f.OCIVersionMax == "" {
		t.Errorf("document %s", data)
	}
	l := f.Linux
	if l == nil || l.MountExtensions == nil || l.MountExtensions.IDMap == nil || *l.MountExtensions.IDMap.Enabled {
		t.Errorf("ID-mapped mounts are not said to be off: %s", data)
	}
	if l == nil || l.Apparmor == nil || *l.Apparmor.Enabled || l.Selinux == nil || *l.Selinux.Enabled {
		t.Errorf("host security labels are not said to be off: %s", data)
	}
	if l == nil || !slices.Contains(l.Namespaces, "network") || !slices.Contains(l.Capabilities, "CAP_NET_ADMIN") {
		t.Errorf("namespaces or capabilities missing: %s", data)
	}
}

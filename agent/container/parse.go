package container

import (
	"bytes"
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ParseSpec decodes an OCI runtime spec (config.json). Decoding is strict: a
// field this version of the runtime spec does not define is an
// ErrInvalidArgument error rather than silently dropped.
func ParseSpec(b []byte) (*specs.Spec, error) {
	var s specs.Spec
	if err := decodeStrict(b, &s); err != nil {
		return nil, fmt.Errorf("parsing spec: %w", err)
	}
	return &s, nil
}

// ParseProcess decodes an OCI process object (what runc exec --process
// reads), strictly.
func ParseProcess(b []byte) (*specs.Process, error) {
	var p specs.Process
	if err := decodeStrict(b, &p); err != nil {
		return nil, fmt.Errorf("parsing process: %w", err)
	}
	return &p, nil
}

// ParseResources decodes an OCI LinuxResources object (what runc update -r
// reads), strictly.
func ParseResources(b []byte) (*specs.LinuxResources, error) {
	var r specs.LinuxResources
	if err := decodeStrict(b, &r); err != nil {
		return nil, fmt.Errorf("parsing resources: %w", err)
	}
	return &r, nil
}

func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if d.More() {
		return invalidf("trailing data after the JSON object")
	}
	return nil
}

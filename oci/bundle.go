package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ConfigFile is the name of the spec inside a bundle.
const ConfigFile = "config.json"

// MaxConfigSize is the largest config.json that LoadBundle accepts. The
// spec travels to the guest agent in one ttrpc message, which may not
// exceed 4 MiB (ttrpc's limit on both ends); 64 KiB are left for the
// request's other fields and for the paths that ForGuest lengthens.
const MaxConfigSize = 4<<20 - 64<<10

// ErrInvalidBundle is wrapped by every error about a bundle's content: a
// malformed or incomplete config.json, or a missing root file system.
var ErrInvalidBundle = errors.New("invalid bundle")

// Bundle is a loaded and validated OCI bundle.
type Bundle struct {
	// Dir is the bundle directory, absolute.
	Dir string
	// Spec is config.json.
	Spec *specs.Spec
	// Rootfs is the host path of the root file system: root.path made
	// absolute (a relative one is relative to Dir).
	Rootfs string
	// GuestNamespaces maps namespace paths of the spec to paths of the
	// same namespaces in the guest; ForGuest keeps the namespaces it maps
	// (a pod's containers join its sandbox container's namespaces, which
	// the caller knows by their host paths). LoadBundle leaves it empty.
	GuestNamespaces map[string]string
}

// invalid returns an error wrapping ErrInvalidBundle with a message of its
// own (ErrInvalidBundle's text is not repeated).
func invalid(format string, args ...any) error {
	return &bundleError{msg: fmt.Sprintf(format, args...)}
}

type bundleError struct{ msg string }

func (e *bundleError) Error() string { return e.msg }
func (e *bundleError) Unwrap() error { return ErrInvalidBundle }

// LoadBundle reads dir/config.json, validates it and checks the root file
// system. Errors are one line naming the problem, and wrap ErrInvalidBundle
// when the bundle's content is at fault.
func LoadBundle(dir string) (*Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("loading bundle %s: %w", dir, err)
	}
	data, err := readConfig(filepath.Join(abs, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("loading bundle %s: %w", abs, err)
	}
	spec, err := ParseSpec(data)
	if err != nil {
		return nil, fmt.Errorf("loading bundle %s: %w", abs, err)
	}
	rootfs, err := checkRootfs(abs, spec.Root.Path)
	if err != nil {
		return nil, fmt.Errorf("loading bundle %s: %w", abs, err)
	}
	return &Bundle{Dir: abs, Spec: spec, Rootfs: rootfs}, nil
}

// readConfig reads a config.json of at most MaxConfigSize bytes, without
// reading more than that of a larger one.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, invalid("%s does not exist", ConfigFile)
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ConfigFile, err)
	}
	if len(data) > MaxConfigSize {
		size := "more"
		if fi, err := f.Stat(); err == nil {
			size = strconv.FormatInt(fi.Size(), 10)
		}
		return nil, invalid("%s is too large: %s bytes, the guest agent accepts at most %d", ConfigFile, size, MaxConfigSize)
	}
	return data, nil
}

// checkRootfs returns the host path of root.path (relative to the bundle
// directory dir when relative) and refuses what runc refuses: a path that
// does not exist, is not a directory, or is not its own real path (a
// symbolic link, or a path through one), and the host's root itself. A
// relative root.path is taken relative to the bundle's real path, as runc,
// which resolves it after changing into the bundle, has it.
func checkRootfs(dir, path string) (string, error) {
	rootfs := filepath.Clean(path)
	if !filepath.IsAbs(rootfs) {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", fmt.Errorf("resolving the bundle directory: %w", err)
		}
		rootfs = filepath.Join(real, rootfs)
	}
	fi, err := os.Stat(rootfs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", invalid("rootfs %s does not exist", rootfs)
	case err != nil:
		return "", fmt.Errorf("rootfs: %w", err)
	case !fi.IsDir():
		return "", invalid("rootfs %s is not a directory", rootfs)
	}
	real, err := filepath.EvalSymlinks(rootfs)
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	if real != rootfs {
		return "", invalid("invalid rootfs %s: a symbolic link or a path through one (it resolves to %s)", rootfs, real)
	}
	if real == "/" {
		return "", invalid("invalid rootfs %s: the host's root directory", rootfs)
	}
	return rootfs, nil
}

// ParseSpec decodes and validates the text of a config.json. Unknown fields
// are ignored, as runc ignores them; known fields of the wrong type are
// errors.
func ParseSpec(data []byte) (*specs.Spec, error) {
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, decodeError(ConfigFile, data, err)
	}
	if err := Validate(&spec); err != nil {
		return nil, err
	}
	return &spec, nil
}

// ParseProcess decodes and validates a process object (runc exec
// --process).
func ParseProcess(name string, data []byte) (*specs.Process, error) {
	var p specs.Process
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, decodeError(name, data, err)
	}
	if err := validateProcess(name, "", &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// decodeError turns a JSON error into one line saying where the problem is.
func decodeError(name string, data []byte, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		line, col := position(data, syntax.Offset)
		return invalid("%s: malformed JSON at line %d, column %d: %v", name, line, col, err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "top level"
		}
		return invalid("%s: %s must be %s, not %s", name, field, describe(typ.Type), article(typ.Value))
	}
	return invalid("%s: %v", name, err)
}

// position converts a byte offset of data to a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < offset-1 && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// describe names a Go type as a JSON value: "an array of strings".
func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return describe(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array of " + plural(t.Elem())
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

func plural(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return plural(t.Elem())
	case reflect.String:
		return "strings"
	case reflect.Bool:
		return "booleans"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integers"
	case reflect.Float32, reflect.Float64:
		return "numbers"
	case reflect.Slice, reflect.Array:
		return "arrays"
	}
	return "objects"
}

// article prefixes a JSON value kind as encoding/json names it ("number",
// "string", "object", "array", "bool", "number -1").
func article(v string) string {
	switch v {
	case "array", "object":
		return "an " + v
	case "bool":
		return "a boolean"
	case "":
		return "this value"
	}
	return "a " + v
}

package oci

import (
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Validate checks what cocoon needs of a spec before anything is created:
// a root path, a process with a program and an absolute working directory,
// and mounts with destinations. Everything else is left to the guest's
// container runtime, which reports its own errors.
func Validate(spec *specs.Spec) error {
	if spec.Root == nil || spec.Root.Path == "" {
		return invalid("%s: root.path is missing", ConfigFile)
	}
	if spec.Process == nil {
		return invalid("%s: process is missing", ConfigFile)
	}
	if err := validateProcess(ConfigFile, "process.", spec.Process); err != nil {
		return err
	}
	for i, m := range spec.Mounts {
		if m.Destination == "" {
			return invalid("%s: mounts[%d].destination is missing", ConfigFile, i)
		}
		if isBind(m) && m.Source == "" {
			return invalid("%s: mounts[%d] (%s) is a bind mount without a source", ConfigFile, i, m.Destination)
		}
	}
	return nil
}

// validateProcess checks a process object; prefix names it in messages.
func validateProcess(name, prefix string, p *specs.Process) error {
	switch {
	case len(p.Args) == 0:
		return invalid("%s: %sargs is missing or empty", name, prefix)
	case len(p.Args) > 0 && p.Args[0] == "":
		return invalid("%s: %sargs[0] is empty", name, prefix)
	case p.Cwd == "":
		return invalid("%s: %scwd is missing", name, prefix)
	case !filepath.IsAbs(p.Cwd):
		return invalid("%s: %scwd must be an absolute path, not %q", name, prefix, p.Cwd)
	}
	return nil
}

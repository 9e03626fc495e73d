package main

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/oci"
)

// defaultSpec is runc spec's template (hostname "cocoon").
//
//go:embed default_spec.json
var defaultSpec []byte

var specCommand = &cli.Command{
	Name:  "spec",
	Usage: "create a new specification file",
	Description: `spec writes config.json for a bundle whose root file system is ./rootfs,
running sh with a terminal, as runc spec does.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the root of the bundle directory"},
		&cli.BoolFlag{Name: "rootless", Usage: "generate a configuration for a rootless container"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, true); err != nil {
			return err
		}
		spec, err := newSpec(c.Bool("rootless"))
		if err != nil {
			return err
		}
		path := oci.ConfigFile
		if b := c.String("bundle"); b != "" {
			path = filepath.Join(b, oci.ConfigFile)
		}
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("File %s exists. Remove it first", path) //nolint:staticcheck // runc's text
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		data, err := json.MarshalIndent(spec, "", "\t")
		if err != nil {
			return err
		}
		return os.WriteFile(path, data, 0o666)
	},
}

// newSpec returns the default spec, made rootless as runc does on request.
func newSpec(rootless bool) (*specs.Spec, error) {
	var spec specs.Spec
	if err := json.Unmarshal(defaultSpec, &spec); err != nil {
		return nil, fmt.Errorf("default spec: %w", err)
	}
	spec.Version = specs.Version
	if rootless {
		toRootless(&spec)
	}
	return &spec, nil
}

// toRootless is runc's specconv.ToRootless: a user namespace mapping the
// caller, no network namespace, /sys bind-mounted, no gid= on devpts, no
// resources.
func toRootless(spec *specs.Spec) {
	var ns []specs.LinuxNamespace
	for _, n := range spec.Linux.Namespaces {
		if n.Type != specs.NetworkNamespace && n.Type != specs.UserNamespace {
			ns = append(ns, n)
		}
	}
	spec.Linux.Namespaces = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace})
	spec.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: uint32(os.Geteuid()), ContainerID: 0, Size: 1}}
	spec.Linux.GIDMappings = []specs.LinuxIDMapping{{HostID: uint32(os.Getegid()), ContainerID: 0, Size: 1}}
	var mounts []specs.Mount
	for _, m := range spec.Mounts {
		switch m.Destination {
		case "/sys":
			m = specs.Mount{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		case "/sys/fs/cgroup":
			continue
		case "/dev/pts":
			var opts []string
			for _, o := range m.Options {
				if len(o) < 4 || o[:4] != "gid=" {
					opts = append(opts, o)
				}
			}
			m.Options = opts
		}
		mounts = append(mounts, m)
	}
	spec.Mounts = mounts
	spec.Linux.Resources = nil
}

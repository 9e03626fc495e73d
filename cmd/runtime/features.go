package main

import (
	"encoding/json"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/oci"
)

var featuresCommand = &cli.Command{
	Name:  "features",
	Usage: "show the enabled features",
	Description: `features prints what the runtime supports, in the runtime-spec's features
format. Containers run in a guest whose runtime is runc's libcontainer, so
the Linux features are runc's; host security labels (AppArmor, SELinux),
ID-mapped mounts and the host's network devices do not cross into the VM.
The containerd shim's -info carries the same document.`,
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, true); err != nil {
			return err
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "    ")
		return enc.Encode(oci.Features(version))
	},
}

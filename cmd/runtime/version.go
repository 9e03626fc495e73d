package main

import (
	"fmt"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/sandbox"
)

var versionCommand = &cli.Command{
	Name:  "version",
	Usage: "print the runtime, agent protocol and OCI spec versions",
	Action: func(c *cli.Context) error {
		fmt.Printf("cocoon-runtime version %s\n", version)
		fmt.Printf("agent api: %d\n", sandbox.AgentAPIVersion)
		fmt.Printf("spec: %s\n", specs.Version)
		return nil
	},
}

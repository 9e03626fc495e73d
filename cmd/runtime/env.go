package main

import (
	"fmt"
	"os"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/config"
)

var envCommand = &cli.Command{
	Name:  "env",
	Usage: "print the effective configuration as TOML",
	Description: `env prints the configuration that commands use: the embedded defaults with
the configuration file (--config, $COCOON_CONFIG or ` + config.DefaultPath + `)
applied, relative paths resolved.`,
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, true); err != nil {
			return err
		}
		path := config.Path(c.String("config"))
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		fmt.Printf("# effective configuration (file: %s)\n", path)
		fmt.Printf("# runtime root: %s; sandboxes: %s\n", c.String("root"), sandboxRoot(c.String("root")))
		return toml.NewEncoder(os.Stdout).Encode(cfg)
	},
}

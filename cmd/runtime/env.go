package main

import (
	"bufio"
	"encoding/json"
	"os"
	"runtime"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/initrd"
	"github.com/cocoon-containers/cocoon/internal/hostcheck"
	"github.com/cocoon-containers/cocoon/sandbox"
)

var envCommand = &cli.Command{
	Name:  "env",
	Usage: "print the effective configuration and the versions of every part, as TOML (--json: JSON)",
	Description: `env prints, as kata-env does, what commands would use: the runtime's
version and paths, the agent version recorded in the guest image, the guest
kernel's release, QEMU's version, the host, and the configuration (the
embedded defaults with the configuration file (--config, $COCOON_CONFIG or
` + config.DefaultPath + `) applied, relative paths resolved). Nothing is
booted: versions are read from the files themselves. A part that cannot be
read has an "error" entry instead of a version.`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print JSON instead of TOML"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, true); err != nil {
			return err
		}
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		e := collectEnv(c, cfg)
		if c.Bool("json") {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			return enc.Encode(e)
		}
		return toml.NewEncoder(c.App.Writer).Encode(e)
	},
}

// runtimeEnv is env's output. Every section has the same keys in TOML and JSON.
type runtimeEnv struct {
	Runtime    envRuntime     `toml:"runtime" json:"runtime"`
	Agent      envAgent       `toml:"agent" json:"agent"`
	Kernel     envKernel      `toml:"kernel" json:"kernel"`
	Hypervisor envHypervisor  `toml:"hypervisor" json:"hypervisor"`
	Host       envHost        `toml:"host" json:"host"`
	Config     *config.Config `toml:"config" json:"config"`
}

type envRuntime struct {
	Version     string `toml:"version" json:"version"`
	Path        string `toml:"path" json:"path"`
	ConfigPath  string `toml:"config_path" json:"config_path"`
	ConfigFound bool   `toml:"config_found" json:"config_found"`
	Root        string `toml:"root" json:"root"`
	SandboxRoot string `toml:"sandbox_root" json:"sandbox_root"`
	AgentAPI    int    `toml:"agent_api" json:"agent_api"`
	OCISpec     string `toml:"oci_spec" json:"oci_spec"`
	GoVersion   string `toml:"go_version" json:"go_version"`
}

type envAgent struct {
	// Version is the one recorded in the initrd when it was built.
	Version string `toml:"version" json:"version"`
	Image   string `toml:"image" json:"image"`
	// MatchesRuntime says whether runtime and agent come from one build.
	MatchesRuntime bool   `toml:"matches_runtime" json:"matches_runtime"`
	Error          string `toml:"error,omitempty" json:"error,omitempty"`
}

type envKernel struct {
	Path    string `toml:"path" json:"path"`
	Format  string `toml:"format" json:"format"`
	Release string `toml:"release" json:"release"`
	Error   string `toml:"error,omitempty" json:"error,omitempty"`
}

type envHypervisor struct {
	Path             string `toml:"path" json:"path"`
	Version          string `toml:"version" json:"version"`
	Banner           string `toml:"banner" json:"banner"`
	Accelerator      string `toml:"accelerator" json:"accelerator"`
	AcceleratorWhy   string `toml:"accelerator_reason" json:"accelerator_reason"`
	TimeoutScale     int    `toml:"timeout_scale" json:"timeout_scale"`
	AgentTransport   string `toml:"agent_transport" json:"agent_transport"`
	Error            string `toml:"error,omitempty" json:"error,omitempty"`
	AcceleratorError string `toml:"accelerator_error,omitempty" json:"accelerator_error,omitempty"`
}

type envHost struct {
	Kernel       string `toml:"kernel" json:"kernel"`
	Architecture string `toml:"architecture" json:"architecture"`
	Distribution string `toml:"distribution" json:"distribution"`
	CPUs         int    `toml:"cpus" json:"cpus"`
}

func collectEnv(c *cli.Context, cfg *config.Config) runtimeEnv {
	path := config.Path(c.String("config"))
	_, statErr := os.Stat(path)
	exe, _ := os.Executable()
	e := runtimeEnv{
		Runtime: envRuntime{
			Version: version, Path: exe, ConfigPath: path, ConfigFound: statErr == nil,
			Root: c.String("root"), SandboxRoot: container.RuntimeSandboxRoot(c.String("root")),
			AgentAPI: sandbox.AgentAPIVersion, OCISpec: specs.Version, GoVersion: runtime.Version(),
		},
		Config: cfg,
	}

	e.Agent.Image = cfg.Hypervisor.Initrd
	if info, err := initrd.Inspect(cfg.Hypervisor.Initrd); err != nil {
		e.Agent.Error = err.Error()
	} else {
		e.Agent.Version = info.Version
		e.Agent.MatchesRuntime = info.Version == version
	}

	e.Kernel.Path = cfg.Hypervisor.Kernel
	if k, err := hostcheck.InspectKernel(cfg.Hypervisor.Kernel); err != nil {
		e.Kernel.Error = err.Error()
	} else {
		e.Kernel.Format, e.Kernel.Release = k.Format, k.Release
	}

	h := &e.Hypervisor
	h.Path = cfg.Hypervisor.Path
	var err error
	if h.Version, h.Banner, err = hostcheck.QEMUVersion(c.Context, cfg.Hypervisor.Path); err != nil {
		h.Error = err.Error()
	}
	accel, why, err := sandbox.ResolveAccelerator(cfg.Hypervisor.Accelerator)
	if err != nil {
		h.AcceleratorError = err.Error()
	} else {
		h.Accelerator, h.AcceleratorWhy, h.TimeoutScale = string(accel), why, int(accel.TimeoutScale())
	}
	h.AgentTransport = sandbox.ResolveTransport(cfg.Agent.Transport)

	var u unix.Utsname
	_ = unix.Uname(&u)
	e.Host = envHost{
		Kernel:       unix.ByteSliceToString(u.Release[:]),
		Architecture: unix.ByteSliceToString(u.Machine[:]),
		Distribution: osRelease("/etc/os-release"),
		CPUs:         runtime.NumCPU(),
	}
	return e
}

// osRelease returns PRETTY_NAME from an os-release file.
func osRelease(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// Package config is cocoon's configuration: the TOML file
// (/etc/cocoon/configuration.toml by default), its defaults, and validation.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the configuration is read from when neither --config
// nor COCOON_CONFIG names another file.
const DefaultPath = "/etc/cocoon/configuration.toml"

// EnvPath names the environment variable that overrides DefaultPath.
const EnvPath = "COCOON_CONFIG"

//go:embed configuration.toml
var defaultTOML []byte

// Default returns the embedded default configuration (the same text that is
// installed as /etc/cocoon/configuration.toml).
func Default() []byte { return bytes.Clone(defaultTOML) }

// Config is the whole configuration.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor"`
	Agent      Agent      `toml:"agent"`
	Runtime    Runtime    `toml:"runtime"`
}

// Hypervisor configures the VMs.
type Hypervisor struct {
	// Path is the QEMU binary.
	Path string `toml:"path"`
	// Machine is the machine type: "microvm" or "q35".
	Machine string `toml:"machine"`
	// Accelerator is "auto", "kvm" or "tcg".
	Accelerator string `toml:"accelerator"`
	// VCPUs and MemoryMiB size a sandbox that asks for nothing more.
	VCPUs     int `toml:"vcpus"`
	MemoryMiB int `toml:"memory_mib"`
	// Kernel and Initrd are the guest kernel (vmlinux or bzImage) and image.
	Kernel string `toml:"kernel"`
	Initrd string `toml:"initrd"`
	// KernelParams are appended to the guest kernel command line.
	KernelParams []string `toml:"kernel_params"`
	// SharedFS is the shared file system: "9p" or "virtio-fs".
	SharedFS string `toml:"shared_fs"`
	// Debug keeps guest kernel messages on the console log.
	Debug bool `toml:"debug_console"`
}

// Agent configures the channel to the guest agent.
type Agent struct {
	// Transport is "auto", "serial" or "vsock".
	Transport string `toml:"transport"`
	// BootTimeout and CallTimeout are the KVM deadlines; under TCG they are
	// multiplied by the accelerator's scale.
	BootTimeout Duration `toml:"boot_timeout"`
	CallTimeout Duration `toml:"call_timeout"`
	// LogLevel is the agent's log level.
	LogLevel string `toml:"log_level"`
}

// Runtime configures host-side helpers.
type Runtime struct {
	// ProxyPath is cocoon-proxy; empty means next to the running binary, then $PATH.
	ProxyPath string `toml:"proxy_path"`
	// LogLevel is the host side log level.
	LogLevel string `toml:"log_level"`
}

// Duration is a time.Duration written as "30s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Path returns the configuration file to use: explicit (from --config) if
// set, else $COCOON_CONFIG, else DefaultPath.
func Path(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if p := os.Getenv(EnvPath); p != "" {
		return p
	}
	return DefaultPath
}

// Load reads the configuration at path over the embedded defaults. A missing
// file at DefaultPath means "defaults only"; a missing file named
// explicitly is an error.
func Load(path string) (*Config, error) {
	c, err := Parse(defaultTOML)
	if err != nil {
		return nil, fmt.Errorf("embedded default configuration: %w", err)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && path == DefaultPath {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	if err := decodeInto(c, data); err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, err)
	}
	c.resolve(filepath.Dir(path))
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a whole configuration from TOML text, without defaults.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if err := decodeInto(c, data); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

func decodeInto(c *Config, data []byte) error {
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("line %d: %s", perr.Position.Line, perr.Message)
		}
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	return nil
}

// resolve makes relative asset paths relative to the configuration file.
func (c *Config) resolve(dir string) {
	for _, p := range []*string{&c.Hypervisor.Kernel, &c.Hypervisor.Initrd, &c.Runtime.ProxyPath} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// Validate checks values that have a fixed set of choices or ranges.
func (c *Config) Validate() error {
	h := c.Hypervisor
	if err := oneOf("hypervisor.machine", h.Machine, "microvm", "q35"); err != nil {
		return err
	}
	if err := oneOf("hypervisor.accelerator", h.Accelerator, "auto", "kvm", "tcg"); err != nil {
		return err
	}
	if err := oneOf("hypervisor.shared_fs", h.SharedFS, "9p", "virtio-fs"); err != nil {
		return err
	}
	if err := oneOf("agent.transport", c.Agent.Transport, "auto", "serial", "vsock"); err != nil {
		return err
	}
	if h.VCPUs < 1 || h.VCPUs > 64 {
		return fmt.Errorf("hypervisor.vcpus: %d is not between 1 and 64", h.VCPUs)
	}
	if h.MemoryMiB < 64 {
		return fmt.Errorf("hypervisor.memory_mib: %d is below 64", h.MemoryMiB)
	}
	if c.Agent.BootTimeout.Duration <= 0 || c.Agent.CallTimeout.Duration <= 0 {
		return fmt.Errorf("agent.boot_timeout and agent.call_timeout must be positive")
	}
	return nil
}

func oneOf(key, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
}

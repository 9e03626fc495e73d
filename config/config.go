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
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/sirupsen/logrus"
)

// DefaultPath is where the configuration is read from when neither --config
// nor COCOON_CONFIG names another file.
const DefaultPath = "/etc/cocoon/configuration.toml"

// EnvPath names the environment variable that overrides DefaultPath.
const EnvPath = "COCOON_CONFIG"

// maxTemplatePool bounds hypervisor.template_pool: each ready sandbox
// holds a VM's memory and idles.
const maxTemplatePool = 16

//go:embed configuration.toml
var defaultTOML []byte

// Default returns the embedded default configuration (the same text that is
// installed as /etc/cocoon/configuration.toml).
func Default() []byte { return bytes.Clone(defaultTOML) }

// Config is the whole configuration.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor" json:"hypervisor"`
	Agent      Agent      `toml:"agent" json:"agent"`
	Runtime    Runtime    `toml:"runtime" json:"runtime"`
}

// Hypervisor configures the VMs.
type Hypervisor struct {
	// Path is the QEMU binary.
	Path string `toml:"path" json:"path"`
	// Machine is the machine type: "microvm" or "q35".
	Machine string `toml:"machine" json:"machine"`
	// Accelerator is "auto", "kvm" or "tcg".
	Accelerator string `toml:"accelerator" json:"accelerator"`
	// VCPUs and MemoryMiB size a sandbox that asks for nothing more.
	VCPUs     int `toml:"vcpus" json:"vcpus"`
	MemoryMiB int `toml:"memory_mib" json:"memory_mib"`
	// MaxVCPUs and MaxMemoryMiB bound the size a sandbox gets from its
	// container's (or pod's) CPU and memory limits.
	MaxVCPUs     int `toml:"max_vcpus" json:"max_vcpus"`
	MaxMemoryMiB int `toml:"max_memory_mib" json:"max_memory_mib"`
	// Kernel and Initrd are the guest kernel (vmlinux or bzImage) and image.
	Kernel string `toml:"kernel" json:"kernel"`
	Initrd string `toml:"initrd" json:"initrd"`
	// KernelParams are appended to the guest kernel command line.
	KernelParams []string `toml:"kernel_params" json:"kernel_params"`
	// SharedFS is the shared file system: "9p" or "virtio-fs".
	SharedFS string `toml:"shared_fs" json:"shared_fs"`
	// Virtiofsd is the virtio-fs daemon that shared_fs = "virtio-fs" needs.
	Virtiofsd string `toml:"virtiofsd" json:"virtiofsd"`
	// Debug keeps guest kernel messages on the console log.
	Debug bool `toml:"debug_console" json:"debug_console"`
	// Templates restores sandboxes from VM templates (warm start) instead
	// of booting them: "auto" (on where QEMU maps a template read-only
	// for its clones, 8.2 and later), true or false.
	Templates Toggle `toml:"templates" json:"templates"`
	// TemplateDir holds the templates, one directory per key.
	TemplateDir string `toml:"template_dir" json:"template_dir"`
	// TemplatePool is how many sandboxes, restored from their template
	// and warmed up, are kept ready to be taken by the next containers
	// (Kata's VM cache); 0 keeps none.
	TemplatePool int `toml:"template_pool" json:"template_pool"`
}

// Agent configures the channel to the guest agent.
type Agent struct {
	// Transport is "auto", "serial" or "vsock".
	Transport string `toml:"transport" json:"transport"`
	// BootTimeout and CallTimeout are the KVM deadlines; under TCG they are
	// multiplied by the accelerator's scale.
	BootTimeout Duration `toml:"boot_timeout" json:"boot_timeout"`
	CallTimeout Duration `toml:"call_timeout" json:"call_timeout"`
	// HealthTimeout bounds a sandbox's health check (its VMM's status and
	// an agent ping), also scaled: a sandbox that misses it is
	// unresponsive.
	HealthTimeout Duration `toml:"health_timeout" json:"health_timeout"`
	// LogLevel is the agent's log level.
	LogLevel string `toml:"log_level" json:"log_level"`
}

// Runtime configures host-side helpers.
type Runtime struct {
	// ProxyPath is cocoon-proxy; empty means next to the running binary, then $PATH.
	ProxyPath string `toml:"proxy_path" json:"proxy_path"`
	// LogLevel is the host side log level.
	LogLevel string `toml:"log_level" json:"log_level"`
	// CommandTimeout bounds, in wall-clock time whatever the accelerator,
	// a command on a container that exists (start, exec, kill, ps, pause,
	// resume, update, events): what a caller can live with.
	CommandTimeout Duration `toml:"command_timeout" json:"command_timeout"`
	// DeleteTimeout bounds, in wall-clock time, deleting a container whose
	// sandbox is unresponsive or dead: its VM is killed, not asked.
	DeleteTimeout Duration `toml:"delete_timeout" json:"delete_timeout"`
	// HostNamespaces decides what a container that asks for the host's
	// network or IPC namespace gets, which a VM cannot share: HostRefuse
	// (its creation fails) or HostGuest (the VM's own namespace).
	HostNamespaces string `toml:"host_namespaces" json:"host_namespaces"`
}

// The choices of runtime.host_namespaces.
const (
	HostRefuse = "refuse"
	HostGuest  = "guest"
)

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
	if err := c.CheckSharedFS(); err != nil {
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

// typeError is how the TOML decoder words a value of the wrong type.
var typeError = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (?:incompatible types: )?(.*)$`)

// decodeInto decodes data over c. Every error names the line and, where
// there is one, the key: "line 3: hypervisor.vcpus: ...".
func decodeInto(c *Config, data []byte) error {
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			if perr.LastKey != "" {
				return fmt.Errorf("line %d: %s: %s", perr.Position.Line, perr.LastKey, perr.Message)
			}
			return fmt.Errorf("line %d: %s", perr.Position.Line, perr.Message)
		}
		if m := typeError.FindStringSubmatch(err.Error()); m != nil {
			return fmt.Errorf("line %s: %s: wrong type: %s", m[1], m[2], m[3])
		}
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		lines := keyLines(data)
		msgs := make([]string, 0, len(und))
		for _, k := range und {
			parent := k[:len(k)-1].String()
			if len(k) > 1 && md.Type(k[:len(k)-1]...) == "Hash" && !known(parent) {
				continue // inside an unknown table, which is reported itself
			}
			if n, ok := lines[k.String()]; ok {
				msgs = append(msgs, fmt.Sprintf("line %d: unknown key %s", n, k))
			} else {
				msgs = append(msgs, "unknown key "+k.String())
			}
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// known reports whether table is one of the configuration's tables.
func known(table string) bool {
	switch table {
	case "hypervisor", "agent", "runtime":
		return true
	}
	return false
}

// keyLines maps the dotted name of every table header and every "key ="
// line of a TOML text to its line number: enough to place the keys of a
// configuration file, whose tables are plain [name] headers.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "["):
			name, _, _ := strings.Cut(strings.Trim(line, "[]"), "]")
			table = strings.ReplaceAll(strings.TrimSpace(name), " ", "")
			table = strings.ReplaceAll(table, `"`, "")
			if _, seen := lines[table]; !seen {
				lines[table] = i + 1
			}
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			key, _, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			name := strings.Trim(strings.TrimSpace(key), `"`)
			if table != "" {
				name = table + "." + name
			}
			if _, seen := lines[name]; !seen {
				lines[name] = i + 1
			}
		}
	}
	return lines
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
	if h.MaxVCPUs < h.VCPUs || h.MaxVCPUs > 64 {
		return fmt.Errorf("hypervisor.max_vcpus: %d is not between hypervisor.vcpus (%d) and 64", h.MaxVCPUs, h.VCPUs)
	}
	if h.MaxMemoryMiB < h.MemoryMiB {
		return fmt.Errorf("hypervisor.max_memory_mib: %d is below hypervisor.memory_mib (%d)", h.MaxMemoryMiB, h.MemoryMiB)
	}
	if h.TemplatePool < 0 || h.TemplatePool > maxTemplatePool {
		return fmt.Errorf("hypervisor.template_pool: %d is not between 0 and %d", h.TemplatePool, maxTemplatePool)
	}
	if err := oneOf("hypervisor.templates", string(h.Templates), string(Auto), string(On), string(Off)); err != nil {
		return err
	}
	if h.Templates != Off && !filepath.IsAbs(h.TemplateDir) {
		return fmt.Errorf("hypervisor.template_dir: %q is not an absolute path", h.TemplateDir)
	}
	if h.MemoryMiB < 64 {
		return fmt.Errorf("hypervisor.memory_mib: %d is below 64", h.MemoryMiB)
	}
	if c.Agent.BootTimeout.Duration <= 0 {
		return fmt.Errorf("agent.boot_timeout: %s is not positive", c.Agent.BootTimeout)
	}
	if c.Agent.CallTimeout.Duration <= 0 {
		return fmt.Errorf("agent.call_timeout: %s is not positive", c.Agent.CallTimeout)
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{
		{"agent.health_timeout", c.Agent.HealthTimeout},
		{"runtime.command_timeout", c.Runtime.CommandTimeout},
		{"runtime.delete_timeout", c.Runtime.DeleteTimeout},
	} {
		if d.v.Duration <= 0 {
			return fmt.Errorf("%s: %s is not positive", d.name, d.v)
		}
	}
	if err := oneOf("agent.log_level", c.Agent.LogLevel, logLevels...); err != nil {
		return err
	}
	if err := oneOf("runtime.host_namespaces", c.Runtime.HostNamespaces, HostRefuse, HostGuest); err != nil {
		return err
	}
	return oneOf("runtime.log_level", c.Runtime.LogLevel, logLevels...)
}

// logLevels are the levels of agent.log_level and runtime.log_level.
var logLevels = []string{"debug", "info", "warn", "error"}

// Level is runtime.log_level as a logrus level.
func (r Runtime) Level() logrus.Level {
	l, err := logrus.ParseLevel(r.LogLevel)
	if err != nil {
		return logrus.WarnLevel
	}
	return l
}

// VirtiofsdPackage says where a virtiofsd comes from: the Rust daemon's
// own package in Debian 13 and Ubuntu 24.04; QEMU up to 7.2 shipped a C
// one (QEMU 8.0 dropped it), which Debian 12 still has in QEMU 7.2's
// qemu-system-common, and Debian 12 has no other.
const VirtiofsdPackage = `the "virtiofsd" package (Debian 13, Ubuntu 24.04: /usr/libexec/virtiofsd); on Debian 12 with QEMU 10, which has none, QEMU 7.2's (qemu-system-common 7.2: /usr/lib/qemu/virtiofsd), named in hypervisor.virtiofsd`

// virtiofsdPaths are where the packages put virtiofsd, the Rust daemon's
// first: an empty hypervisor.virtiofsd takes the first that exists.
var virtiofsdPaths = []string{"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"}

// CheckSharedFS checks what the shared file system needs on this host:
// nothing for 9p; for virtio-fs, the virtiofsd executable (an empty
// hypervisor.virtiofsd becomes the installed one).
func (c *Config) CheckSharedFS() error {
	if c.Hypervisor.SharedFS != "virtio-fs" {
		return nil
	}
	if c.Hypervisor.Virtiofsd == "" {
		for _, p := range virtiofsdPaths {
			if _, err := os.Stat(p); err == nil {
				c.Hypervisor.Virtiofsd = p
				break
			}
		}
		if c.Hypervisor.Virtiofsd == "" {
			return fmt.Errorf("hypervisor.shared_fs = \"virtio-fs\" needs virtiofsd, and none is installed (%s): install %s", strings.Join(virtiofsdPaths, ", "), VirtiofsdPackage)
		}
	}
	fi, err := os.Stat(c.Hypervisor.Virtiofsd)
	if err != nil {
		return fmt.Errorf("hypervisor.shared_fs = \"virtio-fs\" needs virtiofsd, but hypervisor.virtiofsd %s is missing: install %s, or set hypervisor.virtiofsd", c.Hypervisor.Virtiofsd, VirtiofsdPackage)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("hypervisor.shared_fs = \"virtio-fs\" needs virtiofsd, but hypervisor.virtiofsd %s is not an executable file", c.Hypervisor.Virtiofsd)
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

// Toggle is a setting that cocoon may decide by itself: "auto", or on or
// off (TOML takes true, false, or the string "auto").
type Toggle string

// The values of a Toggle.
const (
	Auto Toggle = "auto"
	On   Toggle = "true"
	Off  Toggle = "false"
)

// UnmarshalTOML reads a boolean or "auto".
func (t *Toggle) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case bool:
		*t = Off
		if x {
			*t = On
		}
		return nil
	case string:
		switch Toggle(x) {
		case Auto, On, Off:
			*t = Toggle(x)
			return nil
		}
	}
	return fmt.Errorf("%v is not true, false or \"auto\"", v)
}

// MarshalTOML writes a boolean, or "auto".
func (t Toggle) MarshalTOML() ([]byte, error) {
	if t == Auto || t == "" {
		return []byte(`"auto"`), nil
	}
	return []byte(string(t)), nil
}

package containerdtest

import (
	"fmt"
	"os"
	"path/filepath"
)

// registryHostsDir is the CRI plugin's registry config_path: a directory
// per registry host holding its hosts.toml (containerd 1.5 and later).
func (d *Daemon) registryHostsDir() string { return filepath.Join(d.Dir, "certs.d") }

// writeRegistryHosts writes, for each registry of mirrors, a hosts.toml
// that sends its pulls and resolves to its mirror over plain HTTP.
func (d *Daemon) writeRegistryHosts(mirrors map[string]string) error {
	for host, mirror := range mirrors {
		dir := filepath.Join(d.registryHostsDir(), host)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("registry configuration of %s: %w", host, err)
		}
		url := "http://" + mirror
		conf := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", url, url)
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(conf), 0o644); err != nil {
			return fmt.Errorf("registry configuration of %s: %w", host, err)
		}
	}
	return nil
}

package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MeshProxyUID is the user NetToolsRootfs adds (as "proxy") for a mesh's
// sidecar proxy, whose own traffic a mesh's rules exempt by owner (Istio's
// istio-proxy is 1337 too).
const MeshProxyUID = 1337

// netTools are the host files NetToolsRootfs copies, with the packages
// that install them (packaging/deps.sh installs them all): the
// distribution's own binaries, not busybox's look-alikes.
var netTools = []struct{ host, pkg string }{
	{"/usr/sbin/xtables-legacy-multi", "iptables"},
	{"/usr/sbin/xtables-nft-multi", "iptables"},
	{"/usr/sbin/nft", "nftables"},
	{"/usr/sbin/brctl", "bridge-utils"},
	{"/usr/sbin/ip", "iproute2"},
	{"/usr/sbin/tc", "iproute2"},
	{"/usr/sbin/ipset", "ipset"},
	{"/usr/sbin/ipvsadm", "ipvsadm"},
}

// xtablesLinks are the names under which the xtables multi-binaries run
// (they look at argv[0]), as Debian's iptables package links them.
var xtablesLinks = map[string][]string{
	"xtables-legacy-multi": {"iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore",
		"ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore"},
	"xtables-nft-multi": {"iptables-nft", "iptables-nft-save", "iptables-nft-restore",
		"ip6tables-nft", "ip6tables-nft-save", "ip6tables-nft-restore"},
}

// NetToolsRootfs makes at dir a busybox root file system (BusyboxRootfs)
// with the host's network tools under /usr/sbin, where Debian has them:
// both iptables back ends (iptables-legacy, iptables-nft and their ip6
// and save/restore names, with the xtables extensions they load), nft,
// brctl, ipset, ipvsadm and iproute2's ip and tc (call ip as /usr/sbin/ip:
// /bin/ip is busybox's),
// with the shared libraries they need (found with ldd) at the paths the
// host's loader finds them. It adds the user and group "proxy"
// (MeshProxyUID) and /run (the xtables lock). Nothing is downloaded: the
// host must have the packages installed (packaging/deps.sh).
func NetToolsRootfs(dir string) error {
	if err := BusyboxRootfs(dir); err != nil {
		return err
	}
	var missing []string
	for _, t := range netTools {
		if _, err := os.Stat(t.host); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", t.host, t.pkg))
		}
	}
	extDirs, _ := filepath.Glob("/usr/lib/*-linux-gnu/xtables")
	if len(extDirs) != 1 {
		missing = append(missing, "/usr/lib/<arch>/xtables (package iptables)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("network tools for a test image: missing %s (packaging/deps.sh installs them)", strings.Join(missing, ", "))
	}
	// Every ELF file copied in, whose libraries come with it.
	var elfs []string
	for _, t := range netTools {
		to := filepath.Join(dir, "usr/sbin", filepath.Base(t.host))
		if err := copyInto(t.host, to); err != nil {
			return err
		}
		elfs = append(elfs, t.host)
		for _, name := range xtablesLinks[filepath.Base(t.host)] {
			if err := os.Symlink(filepath.Base(t.host), filepath.Join(dir, "usr/sbin", name)); err != nil {
				return err
			}
		}
	}
	exts, err := filepath.Glob(filepath.Join(extDirs[0], "*.so"))
	if err != nil {
		return err
	}
	for _, ext := range exts {
		if err := copyInto(ext, filepath.Join(dir, ext)); err != nil {
			return err
		}
		elfs = append(elfs, ext)
	}
	libs := map[string]bool{}
	for _, f := range elfs {
		deps, err := sharedLibraries(f)
		if err != nil {
			return err
		}
		for _, l := range deps {
			libs[l] = true
		}
	}
	for l := range libs {
		if _, err := os.Lstat(filepath.Join(dir, l)); err == nil {
			continue
		}
		if err := copyInto(l, filepath.Join(dir, l)); err != nil {
			return err
		}
	}
	// The services and protocols names that rules may use, when the host
	// has them (netbase).
	for _, f := range []string{"/etc/protocols", "/etc/services"} {
		if _, err := os.Stat(f); err == nil {
			if err := copyInto(f, filepath.Join(dir, f)); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		return err
	}
	for name, line := range map[string]string{
		"etc/passwd": fmt.Sprintf("proxy:x:%d:%d:mesh proxy:/tmp:/bin/sh\n", MeshProxyUID, MeshProxyUID),
		"etc/group":  fmt.Sprintf("proxy:x:%d:\n", MeshProxyUID),
	} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copyInto copies the file at from (following symbolic links) to to,
// making to's directory, with from's permission bits.
func copyInto(from, to string) error {
	fi, err := os.Stat(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return copyFile(from, to, fi.Mode().Perm())
}

// sharedLibraries lists the shared libraries (and the loader) that the ELF
// file at path loads, as ldd resolves them on this host.
func sharedLibraries(path string) ([]string, error) {
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("ldd %s: %w: %s", path, err, ee.Stderr)
		}
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
		// "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)".
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 3 && f[1] == "=>":
			return nil, fmt.Errorf("ldd %s: %s", path, strings.TrimSpace(sc.Text()))
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs, nil
}

package hostcheck

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
)

const fixQEMU = "apt-get install qemu-system-x86 (Debian/Ubuntu), or set hypervisor.path"

// Oldest QEMU that has the microvm machine; the releases tested: 7.2
// (Debian 12's, cold boots) and 10.0 and later (Debian 13's, bookworm-
// backports': cocoon is built and tested on it).
var (
	minQEMU    = [2]int{4, 2}
	testedQEMU = [2]int{7, 2}
	builtQEMU  = [2]int{10, 0}
)

// qemuInfo is what the QEMU binary says about itself.
type qemuInfo struct {
	path    string
	err     error  // running it failed
	version string // "7.2.22"
	banner  string // its first line
	accels  map[string]bool
	devices map[string]bool
}

var qemuVersion = regexp.MustCompile(`version (\d+)\.(\d+)(\.\d+)?`)

// probeQEMU asks QEMU for its version, accelerators and devices. Each
// query is its own short-lived process that starts no VM.
func probeQEMU(ctx context.Context, h Host, path string) qemuInfo {
	q := probeQEMUVersion(ctx, h, path)
	if q.err != nil {
		return q
	}
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := h.Command(ctx, path, args...)
		return string(out), err
	}
	if out, err := run("-accel", "help"); err == nil {
		for _, l := range strings.Split(out, "\n")[1:] {
			if a := strings.TrimSpace(l); a != "" {
				q.accels[a] = true
			}
		}
	}
	if out, err := run("-nodefaults", "-machine", "none", "-device", "help"); err == nil {
		for _, l := range strings.Split(out, "\n") {
			if rest, ok := strings.CutPrefix(l, `name "`); ok {
				name, _, _ := strings.Cut(rest, `"`)
				q.devices[name] = true
			}
		}
	}
	return q
}

// probeQEMUVersion asks QEMU for its version only.
func probeQEMUVersion(ctx context.Context, h Host, path string) qemuInfo {
	q := qemuInfo{path: path, accels: map[string]bool{}, devices: map[string]bool{}}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := h.Command(ctx, path, "--version")
	if err != nil {
		q.err = err
		return q
	}
	q.banner, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	if m := qemuVersion.FindStringSubmatch(q.banner); m != nil {
		q.version = m[1] + "." + m[2] + m[3]
	}
	return q
}

func (q qemuInfo) versionResult() Result {
	r := Result{Name: "qemu"}
	if q.err != nil {
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("%s: %v", q.path, q.err), fixQEMU
		return r
	}
	m := qemuVersion.FindStringSubmatch(q.banner)
	if m == nil {
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("%s: no version in %q", q.path, q.banner), fixQEMU
		return r
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	older := func(v [2]int) bool { return major < v[0] || major == v[0] && minor < v[1] }
	r.Detail = fmt.Sprintf("%s: %s", q.path, q.banner)
	tested := major == testedQEMU[0] && minor == testedQEMU[1] || !older(builtQEMU)
	switch {
	case older(minQEMU):
		r.Status = Fail
		r.Detail += fmt.Sprintf(" (older than %d.%d, which brought the microvm machine)", minQEMU[0], minQEMU[1])
		r.Fix = fixNewQEMU
	case !tested:
		r.Status = Warn
		r.Detail += fmt.Sprintf(" (cocoon is tested with %d.%d and with %d.%d and later)", testedQEMU[0], testedQEMU[1], builtQEMU[0], builtQEMU[1])
		r.Fix = fixNewQEMU
	default:
		r.Status = Pass
	}
	return r
}

// fixNewQEMU says how to get the QEMU cocoon is built on.
const fixNewQEMU = "install QEMU 10.0 or later (Debian 13: apt-get install qemu-system-x86; Debian 12: from bookworm-backports, which packaging/setup-host.sh adds)"

func (q qemuInfo) acceleratorResult(a hypervisor.Accelerator) Result {
	r := Result{Name: "qemu-accel"}
	switch {
	case q.err != nil:
		r.Status, r.Detail, r.Fix = Fail, "no QEMU to ask", fixQEMU
	case a == "":
		r.Status, r.Detail = Fail, "no usable accelerator (see accelerator)"
	case q.accels[string(a)]:
		r.Status, r.Detail = Pass, fmt.Sprintf("QEMU supports %s (accelerators: %s)", a, keys(q.accels))
	default:
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("QEMU does not list %s (accelerators: %s)", a, keys(q.accels)), fixQEMU
	}
	return r
}

// device returns the name of a virtio device on the configured machine:
// virtio-mmio on microvm, PCI on q35.
func device(machine, base string) string {
	if machine == "microvm" {
		return base + "-device"
	}
	return base + "-pci"
}

func (q qemuInfo) sharedFSResult(cfg *config.Config) Result {
	r := Result{Name: "qemu-9p"}
	if cfg.Hypervisor.SharedFS == "virtio-fs" {
		r.Name = "qemu-virtio-fs"
	}
	if q.err != nil {
		r.Status, r.Detail, r.Fix = Fail, "no QEMU to ask", fixQEMU
		return r
	}
	dev := device(cfg.Hypervisor.Machine, "virtio-9p")
	fix := "install Debian's qemu-system-x86 (built with virtfs), or build QEMU with --enable-virtfs"
	if cfg.Hypervisor.SharedFS == "virtio-fs" {
		dev, fix = device(cfg.Hypervisor.Machine, "vhost-user-fs"), "install QEMU 5.0 or later (vhost-user-fs)"
	}
	if !q.devices[dev] {
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("`%s -device help` has no %s (hypervisor.shared_fs = %q)", q.path, dev, cfg.Hypervisor.SharedFS), fix
		return r
	}
	r.Status, r.Detail = Pass, fmt.Sprintf("QEMU has %s (hypervisor.shared_fs = %q, machine %s)", dev, cfg.Hypervisor.SharedFS, cfg.Hypervisor.Machine)
	return r
}

// checkVirtiofsd checks the virtio-fs daemon; only with
// hypervisor.shared_fs = "virtio-fs" (nil otherwise).
func checkVirtiofsd(cfg *config.Config) []Result {
	if cfg.Hypervisor.SharedFS != "virtio-fs" {
		return nil
	}
	r := Result{Name: "virtiofsd"}
	if err := cfg.CheckSharedFS(); err != nil {
		r.Status, r.Detail = Fail, err.Error()
		r.Fix = "install " + config.VirtiofsdPackage + `, set hypervisor.virtiofsd, or use hypervisor.shared_fs = "9p"`
		return []Result{r}
	}
	r.Status, r.Detail = Pass, cfg.Hypervisor.Virtiofsd+` (hypervisor.shared_fs = "virtio-fs")`
	return []Result{r}
}

func (q qemuInfo) transportResult(cfg *config.Config) Result {
	r := Result{Name: "qemu-agent"}
	if q.err != nil {
		r.Status, r.Detail, r.Fix = Fail, "no QEMU to ask", fixQEMU
		return r
	}
	need := []string{device(cfg.Hypervisor.Machine, "virtio-serial")}
	if cfg.Agent.Transport == "vsock" {
		need = []string{device(cfg.Hypervisor.Machine, "vhost-vsock")}
	}
	for _, d := range need {
		if !q.devices[d] {
			r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("QEMU has no %s for the agent channel", d), fixQEMU
			return r
		}
	}
	r.Status, r.Detail = Pass, fmt.Sprintf("QEMU has %s for the agent channel", strings.Join(need, ", "))
	return r
}

func keys(m map[string]bool) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// QEMUVersion runs `path --version` and returns the version number and the
// first line of its answer.
func QEMUVersion(ctx context.Context, path string) (version, banner string, err error) {
	q := probeQEMUVersion(ctx, Host{}.withDefaults(), path)
	return q.version, q.banner, q.err
}

// checkTemplates says whether sandboxes are restored from VM templates
// (warm start), and why: a warning where the QEMU decided against them, or
// where they are on with a QEMU whose clones open the template read-write.
func checkTemplates(in Input) Result {
	cfg := in.Config.Hypervisor
	r := Result{Name: "templates", Status: Pass}
	switch {
	case in.Templates && cfg.Templates == config.On && strings.Contains(in.TemplatesWhy, "read-write"):
		r.Status = Warn
		r.Detail = "on (hypervisor.templates = true), with a QEMU whose clones open the template read-write"
		r.Fix = fixNewQEMU
	case in.Templates:
		r.Detail = fmt.Sprintf("on: %s; %d ready sandbox(es) of each kind kept (hypervisor.template_pool)", in.TemplatesWhy, cfg.TemplatePool)
	case cfg.Templates == config.Off:
		r.Detail = "off (hypervisor.templates = false): every sandbox boots"
	default:
		r.Status = Warn
		r.Detail = "off: " + in.TemplatesWhy + "; every sandbox boots (slower)"
		r.Fix = fixNewQEMU
	}
	return r
}

package hostcheck

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cocoon-containers/cocoon/initrd"
)

const fixImage = "make kernel image install (builds the guest kernel and initrd and installs them to /usr/share/cocoon), or set hypervisor.kernel / hypervisor.initrd"

// KernelInfo is what KernelRelease finds in a guest kernel image.
type KernelInfo struct {
	// Format is "vmlinux" (ELF, boots through PVH) or "bzImage".
	Format string
	// Release is the kernel's release ("6.1.158"), from its version banner.
	Release string
	// Recorded is the content of kernel.release next to the image (written
	// by `make kernel`), "" when there is none.
	Recorded string
}

// InspectKernel reads a guest kernel image: its format and the release in
// its version banner, and the release recorded next to it.
func InspectKernel(path string) (KernelInfo, error) {
	var k KernelInfo
	b, err := os.ReadFile(path)
	if err != nil {
		return k, err
	}
	if rec, err := os.ReadFile(filepath.Join(filepath.Dir(path), "kernel.release")); err == nil {
		k.Recorded = strings.TrimSpace(string(rec))
	}
	switch {
	case bytes.HasPrefix(b, []byte("\x7fELF")):
		k.Format = "vmlinux"
		i := bytes.Index(b, []byte("Linux version "))
		if i < 0 {
			return k, fmt.Errorf("%s: an ELF file without a Linux version banner", path)
		}
		k.Release = firstField(b[i+len("Linux version "):])
	case len(b) > 0x210 && string(b[0x202:0x206]) == "HdrS":
		// The x86 boot protocol: kernel_version at 0x20e points at the
		// version string, 0x200 bytes before its offset.
		k.Format = "bzImage"
		off := int(binary.LittleEndian.Uint16(b[0x20e:])) + 0x200
		if off <= 0x200 || off >= len(b) {
			return k, fmt.Errorf("%s: bzImage without a version string", path)
		}
		k.Release = firstField(b[off:])
	default:
		return k, fmt.Errorf("%s: neither a vmlinux (ELF) nor a bzImage", path)
	}
	return k, nil
}

func firstField(b []byte) string {
	if len(b) > 256 {
		b = b[:256]
	}
	if i := bytes.IndexAny(b, " \x00\n"); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func checkKernel(path string) Result {
	r := Result{Name: "kernel"}
	k, err := InspectKernel(path)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), fixImage
		return r
	}
	r.Detail = fmt.Sprintf("%s: %s %s", path, k.Format, k.Release)
	switch {
	case k.Recorded == "":
		r.Status = Warn
		r.Detail += " (no kernel.release beside it: not installed by make install)"
		r.Fix = fixImage
	case k.Recorded != k.Release:
		r.Status = Fail
		r.Detail += fmt.Sprintf(" but kernel.release beside it says %s: the image was replaced", k.Recorded)
		r.Fix = fixImage
	default:
		r.Status = Pass
	}
	return r
}

func checkInitrd(path, runtimeVersion string) Result {
	r := Result{Name: "initrd"}
	info, err := initrd.Inspect(path)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), fixImage
		return r
	}
	if !info.HasInit {
		r.Status, r.Detail, r.Fix = Fail, path+": no /init (cocoon-agent) in the archive", fixImage
		return r
	}
	switch {
	case info.Version == "":
		r.Status = Warn
		r.Detail = path + ": agent version not recorded in the image"
		r.Fix = fixImage
	case info.Version != runtimeVersion:
		r.Status = Warn
		r.Detail = fmt.Sprintf("%s: agent %s, but cocoon-runtime is %s: they are built and installed together", path, info.Version, runtimeVersion)
		r.Fix = fixImage
	default:
		r.Status, r.Detail = Pass, fmt.Sprintf("%s: agent %s, matches cocoon-runtime", path, info.Version)
	}
	return r
}

package factory

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
)

// templateFormat versions the layout of a template and its key: bump it
// when either changes, and older templates are no longer found.
const templateFormat = 2

// Key is what a template depends on: a VM is restored only from a template
// made with the same key. The guest image stands for the agent's version
// (the agent is the initrd's /init).
type Key struct {
	Format       int                    `json:"format"`
	GuestABI     int                    `json:"guestAbi"`
	AgentAPI     int                    `json:"agentApi"`
	QEMU         FileID                 `json:"qemu"`
	Kernel       FileID                 `json:"kernel"`
	Initrd       FileID                 `json:"initrd"`
	Machine      string                 `json:"machine"`
	Accelerator  hypervisor.Accelerator `json:"accelerator"`
	VCPUs        int                    `json:"vcpus"`
	MemoryMiB    int                    `json:"memoryMib"`
	KernelParams []string               `json:"kernelParams"`
	Debug        bool                   `json:"debug,omitempty"`
	SharedFS     string                 `json:"sharedFs"`
	NICs         int                    `json:"nics"`
}

// FileID identifies a version of a file without reading it: path, size,
// modification time and inode.
type FileID struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	Inode   uint64    `json:"inode"`
}

// Hash names the template directory of the key.
func (k Key) Hash() string {
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func fileID(path string) (FileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileID{}, err
	}
	id := FileID{Path: path, Size: fi.Size(), ModTime: fi.ModTime().UTC()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Inode = st.Ino
	}
	return id, nil
}

// keyOf is the key of the templates that a VM of configuration cfg, sharing
// its directory with sharedFS, can be restored from.
func keyOf(cfg hypervisor.VMConfig, sharedFS string) (Key, error) {
	binary := cfg.Binary
	if binary == "" {
		binary = qemu.DefaultBinary
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return Key{}, fmt.Errorf("template key: %w", err)
	}
	k := Key{
		Format:       templateFormat,
		GuestABI:     qemu.GuestABI,
		AgentAPI:     api.APIVersion,
		Machine:      cfg.Machine,
		Accelerator:  cfg.Accelerator,
		VCPUs:        cfg.VCPUs,
		MemoryMiB:    cfg.MemoryMiB,
		KernelParams: cfg.KernelParams,
		Debug:        cfg.Debug,
		SharedFS:     sharedFS,
		NICs:         len(cfg.NICs),
	}
	if k.Machine == "" {
		k.Machine = qemu.DefaultMachine
	}
	for _, f := range []struct {
		id   *FileID
		path string
	}{{&k.QEMU, path}, {&k.Kernel, cfg.Kernel}, {&k.Initrd, cfg.Initrd}} {
		if *f.id, err = fileID(f.path); err != nil {
			return Key{}, fmt.Errorf("template key: %w", err)
		}
	}
	return k, nil
}

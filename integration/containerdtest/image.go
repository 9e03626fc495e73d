package containerdtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// Image is an image to import: a root file system directory and the
// image's command.
type Image struct {
	Name   string // e.g. docker.io/cocoon/busybox:test
	Rootfs string
	Cmd    []string
}

// Import imports the image into namespace ns with ctr images import, from
// a docker-archive tar written next to the rootfs.
func (d *Daemon) Import(ctx context.Context, ns string, img Image) error {
	archive := img.Rootfs + ".tar"
	if err := WriteDockerArchive(archive, img); err != nil {
		return err
	}
	defer os.Remove(archive)
	_, err := d.Ctr(ctx, ns, "images", "import", archive)
	return err
}

// writeDockerArchive writes img as `docker save` does: one layer, its
// config, and manifest.json naming the tag.
func WriteDockerArchive(path string, img Image) error {
	layer, err := tarDir(img.Rootfs)
	if err != nil {
		return err
	}
	diffID := sha256.Sum256(layer)
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Cmd": img.Cmd, "Env": []string{"PATH=/bin:/sbin:/usr/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{img.Name}, "Layers": []string{"layer.tar"},
	}})
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{{"layer.tar", layer}, {configName, config}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			f.Close()
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// tarDir returns a tar of dir's content (regular files, directories,
// symbolic links).
func tarDir(dir string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = rel
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("archiving %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PauseRootfs makes at dir the root file system of a pause image: one
// static binary, /pause, built from a few lines of Go, that waits for
// SIGTERM or SIGINT.
func PauseRootfs(ctx context.Context, dir string) error {
	src := filepath.Join(dir+".src", "main.go")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(src))
	const prog = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "pause"), src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building pause: %w: %s", err, out)
	}
	return nil
}

// Images of the tests, built here from the host's busybox-static and a few
// lines of Go.
const (
	BusyboxImage = "docker.io/cocoon/busybox:test"
	PauseImage   = "docker.io/cocoon/pause:test"
)

// ImportBusybox imports BusyboxImage into namespace ns.
func (d *Daemon) ImportBusybox(ctx context.Context, ns string) error {
	rootfs := filepath.Join(d.Dir, "busybox-"+ns)
	defer os.RemoveAll(rootfs)
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		return err
	}
	return d.Import(ctx, ns, Image{Name: BusyboxImage, Rootfs: rootfs, Cmd: []string{"sh"}})
}

// ImportPause imports PauseImage into namespace ns.
func (d *Daemon) ImportPause(ctx context.Context, ns string) error {
	rootfs := filepath.Join(d.Dir, "pause-"+ns)
	defer os.RemoveAll(rootfs)
	if err := PauseRootfs(ctx, rootfs); err != nil {
		return err
	}
	return d.Import(ctx, ns, Image{Name: PauseImage, Rootfs: rootfs, Cmd: []string{"/pause"}})
}

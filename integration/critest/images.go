package critest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Registries are the registries whose images the suite pulls; the test's
// registry serves them all (containerd's registry configuration sends
// their pulls there), so the suite's image names stay as written.
var Registries = []string{"registry.k8s.io", "gcr.io"}

// SandboxImage is the pods' sandbox (pause) image. Its process is not
// sleep: containers share the pod's PID namespace by default, and the
// spec "execSync with timeout" looks for a sleep of its own with pgrep.
const SandboxImage = "registry.k8s.io/pause:3.10"

// Registry is an in-memory registry (go-containerregistry's, the one that
// `crane registry serve` runs) served on a loopback port of the test's
// process.
type Registry struct {
	// Addr is its host:port.
	Addr string
	srv  *http.Server
	done chan error
}

// ServeRegistry starts a registry on a free loopback port.
func ServeRegistry() (*Registry, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the registry: %w", err)
	}
	r := &Registry{
		Addr: l.Addr().String(),
		srv:  &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: time.Minute},
		done: make(chan error, 1),
	}
	go func() { r.done <- r.srv.Serve(l) }()
	return r, nil
}

// Close stops the registry.
func (r *Registry) Close() error {
	err := r.srv.Close()
	if serr := <-r.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// push pushes img to the registry under ref (e.g.
// "registry.k8s.io/e2e-test-images/busybox:1.29-2"): its repository and
// tag, without the registry's host, which is where a mirror's pulls look.
func (r *Registry) push(ctx context.Context, ref string, img v1.Image) error {
	host, rest, ok := strings.Cut(ref, "/")
	if !ok {
		return fmt.Errorf("image %q names no registry", ref)
	}
	known := false
	for _, reg := range Registries {
		known = known || reg == host
	}
	if !known {
		return fmt.Errorf("image %q: registry %s is not one that the test's registry serves (%v)", ref, host, Registries)
	}
	tag, err := name.NewTag(r.Addr+"/"+rest, name.Insecure)
	if err != nil {
		return fmt.Errorf("image %q: %w", ref, err)
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// Programs are the binaries in the suite's images, built by the test:
// statically linked (CGO_ENABLED=0).
type Programs struct {
	// Busybox is Debian's dynamically linked busybox (see BusyboxPath),
	// installed with its shared libraries.
	Busybox string
	// Pause waits for TERM or INT (containerdtest.PauseRootfs).
	Pause string
	// Webserver is ./webserver, installed as nginx and httpd.
	Webserver string
	// NNP is ./nnp, installed setuid root.
	NNP string
}

// The suite's images (cri-tools v1.34.0's pkg/validate and pkg/framework,
// and the user and group images of its images/build script).
const (
	e2e   = "registry.k8s.io/e2e-test-images/"
	tools = "gcr.io/k8s-staging-cri-tools/"
)

// image is one of the suite's images: layers on the busybox layer, and
// its configuration.
type image struct {
	refs   []string
	layers []v1.Layer
	config v1.Config
}

// PushImages builds the suite's images from the programs and pushes them
// to the registry. Images with a digest in their name cannot be made: the
// specs that pull one fail under every runtime.
func (r *Registry) PushImages(ctx context.Context, p Programs) error {
	base, err := busyboxLayer(p.Busybox)
	if err != nil {
		return err
	}
	read := func(file string) ([]byte, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading a program of the images: %w", err)
		}
		return data, nil
	}
	pause, err := read(p.Pause)
	if err != nil {
		return err
	}
	web, err := read(p.Webserver)
	if err != nil {
		return err
	}
	nnp, err := read(p.NNP)
	if err != nil {
		return err
	}
	// A layer of one file (and its directories).
	one := func(file string, mode int64, data []byte) (v1.Layer, error) {
		var l layerWriter
		l.file(file, mode, data)
		return l.layer()
	}
	var layers = map[string]v1.Layer{}
	for _, f := range []struct {
		key, file string
		mode      int64
		data      []byte
	}{
		{"pause", "pause", 0o755, pause},
		{"nginx", "usr/sbin/nginx", 0o755, web},
		{"httpd", "usr/local/apache2/bin/httpd", 0o755, web},
		{"nnp", "usr/local/bin/nnp", 0o4755, nnp},
	} {
		if layers[f.key], err = one(f.file, f.mode, f.data); err != nil {
			return err
		}
	}
	// The image-predefined-group image: user default-user (1000) in
	// group group-defined-in-image (50000).
	var group layerWriter
	group.file("etc/passwd", 0o644, []byte(passwd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"))
	group.file("etc/group", 0o644, []byte(groups+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"))
	group.dir("home/default-user", 0o755)
	if layers["group"], err = group.layer(); err != nil {
		return err
	}
	// The test images differ by an empty file of their own.
	marker := func(file string) (v1.Layer, error) { return one(file, 0o644, nil) }

	sh := v1.Config{Cmd: []string{"sh"}}
	nginx := v1.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}}
	images := []image{
		{refs: []string{SandboxImage}, layers: []v1.Layer{layers["pause"]}, config: v1.Config{Entrypoint: []string{"/pause"}}},
		{refs: []string{e2e + "busybox:1.29-2"}, config: sh},
		{refs: []string{e2e + "nginx:1.14-2"}, layers: []v1.Layer{layers["nginx"]}, config: nginx},
		{refs: []string{tools + "hostnet-nginx-" + runtime.GOARCH + ":latest"}, layers: []v1.Layer{layers["nginx"]},
			config: v1.Config{Cmd: nginx.Cmd, Env: []string{"WEBSERVER_PORT=12003"}, ExposedPorts: map[string]struct{}{"12003/tcp": {}}}},
		{refs: []string{e2e + "httpd:2.4.39-4"}, layers: []v1.Layer{layers["httpd"]},
			config: v1.Config{Cmd: []string{"httpd", "-DFOREGROUND"}, Env: []string{"PATH=/usr/local/apache2/bin:" + defaultPath}, ExposedPorts: map[string]struct{}{"80/tcp": {}}}},
		{refs: []string{e2e + "nonewprivs:1.3"}, layers: []v1.Layer{layers["nnp"]}, config: v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}}},
		{refs: []string{tools + "test-image-user-uid:latest"}, config: v1.Config{Cmd: sh.Cmd, User: "1002"}},
		{refs: []string{tools + "test-image-user-username:latest"}, config: v1.Config{Cmd: sh.Cmd, User: "www-data"}},
		{refs: []string{tools + "test-image-user-uid-group:latest"}, config: v1.Config{Cmd: sh.Cmd, User: "1003:1004"}},
		{refs: []string{tools + "test-image-user-username-group:latest"}, config: v1.Config{Cmd: sh.Cmd, User: "www-data:1004"}},
		{refs: []string{tools + "test-image-predefined-group:latest"}, layers: []v1.Layer{layers["group"]}, config: v1.Config{Cmd: sh.Cmd, User: "1000"}},
	}
	for _, n := range []string{"test-image-1", "test-image-2", "test-image-3", "test-image-latest", "test-image-digest"} {
		l, err := marker(n)
		if err != nil {
			return err
		}
		images = append(images, image{refs: []string{tools + n + ":latest"}, layers: []v1.Layer{l}, config: sh})
	}
	same, err := marker("same-image")
	if err != nil {
		return err
	}
	images = append(images, image{refs: []string{tools + "test-image-tags:1", tools + "test-image-tags:2", tools + "test-image-tags:3"},
		layers: []v1.Layer{same}, config: sh})
	for _, tag := range []string{"test", "all"} {
		l, err := marker(tag)
		if err != nil {
			return err
		}
		images = append(images, image{refs: []string{tools + "test-image-tag:" + tag}, layers: []v1.Layer{l}, config: sh})
	}
	for _, im := range images {
		ls := im.layers
		if im.refs[0] != SandboxImage {
			ls = append([]v1.Layer{base}, ls...)
		}
		img, err := buildImage(ls, im.config)
		if err != nil {
			return fmt.Errorf("building %s: %w", im.refs[0], err)
		}
		for _, ref := range im.refs {
			if err := r.push(ctx, ref, img); err != nil {
				return err
			}
		}
	}
	return nil
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// buildImage makes a linux image of the layers, with cfg (PATH added
// when cfg sets no environment).
func buildImage(layers []v1.Layer, cfg v1.Config) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if len(cfg.Env) == 0 {
		cfg.Env = []string{"PATH=" + defaultPath}
	}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// The busybox image's users and groups (those of busybox's own image).
const (
	passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	groups = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`
)

// The applets that Debian's busybox-static lacks and the suite runs, as
// scripts over busybox: pgrep NAME (the PIDs of the processes whose name
// matches, but its own) and ipcs (System V shared memory segments, from
// /proc/sysvipc/shm: key, id, owner's uid, permissions, size, attaches).
const (
	pgrepScript = `#!/bin/sh
# pgrep PATTERN: the PIDs of the processes whose name matches PATTERN.
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
self=$$
for d in /proc/[0-9]*; do
	read -r comm 2>/dev/null < "$d/comm" && printf '%s\t%s\n' "${d#/proc/}" "$comm"
done | awk -F '\t' -v re="$1" -v self="$self" '$1 != self && $2 ~ re { print $1; n++ } END { exit n == 0 }'
`
	ipcsScript = `#!/bin/sh
# ipcs [-m]: the System V shared memory segments of the IPC namespace.
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch"
awk 'NR > 1 { printf "%-10s %-10s %-10s %-10s %-10s %s\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
`
)

// busyboxLayer is the root file system of the suite's default image:
// busybox and its shared libraries (the host's), its applets hard-linked
// in /bin (a spec masks /bin/ls: a symbolic link would mask busybox
// itself), pgrep and ipcs, and the users and groups of busybox's image.
func busyboxLayer(busybox string) (v1.Layer, error) {
	data, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("reading busybox: %w", err)
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox's applets: %w", err)
	}
	libs, err := sharedLibraries(busybox)
	if err != nil {
		return nil, err
	}
	var l layerWriter
	for _, lib := range libs {
		data, err := os.ReadFile(lib)
		if err != nil {
			return nil, fmt.Errorf("reading a library of busybox: %w", err)
		}
		l.file(strings.TrimPrefix(lib, "/"), 0o755, data)
	}
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "sys", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin", "var", "var/run", "var/log", "var/spool", "var/www"} {
		l.dir(d, 0o755)
	}
	l.dir("tmp", 0o1777)
	l.dir("root", 0o700)
	l.file("bin/busybox", 0o755, data)
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		applet := strings.TrimSpace(sc.Text())
		if applet == "" || applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		l.link("bin/"+applet, "bin/busybox", 0o755)
	}
	l.file("bin/pgrep", 0o755, []byte(pgrepScript))
	l.file("bin/ipcs", 0o755, []byte(ipcsScript))
	l.file("etc/passwd", 0o644, []byte(passwd))
	l.file("etc/group", 0o644, []byte(groups))
	return l.layer()
}

// sharedLibraries lists the shared libraries that ldd says binary loads,
// the dynamic loader included, at the paths it names them.
func sharedLibraries(binary string) ([]string, error) {
	out, err := exec.Command("ldd", binary).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", binary, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2]) // libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0]) // /lib64/ld-linux-x86-64.so.2 (0x...)
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s names no library: %s", binary, out)
	}
	return libs, nil
}

// layerWriter writes a layer's tar: entries owned by root, with one
// modification time, so that the same content makes the same layer.
type layerWriter struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	dirs map[string]bool
	err  error
}

var epoch = time.Unix(0, 0)

func (l *layerWriter) header(h *tar.Header, data []byte) {
	if l.tw == nil {
		l.tw = tar.NewWriter(&l.buf)
		l.dirs = map[string]bool{}
	}
	if l.err != nil {
		return
	}
	h.ModTime, h.Format = epoch, tar.FormatPAX
	if l.err = l.tw.WriteHeader(h); l.err == nil && len(data) > 0 {
		_, l.err = l.tw.Write(data)
	}
}

func (l *layerWriter) dir(name string, mode int64) {
	l.parents(name)
	l.header(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: mode}, nil)
	l.dirs[name] = true
}

// parents adds the directories above file that the layer lacks.
func (l *layerWriter) parents(file string) {
	var missing []string
	for d := path.Dir(file); d != "."; d = path.Dir(d) {
		if !l.dirs[d] {
			missing = append([]string{d}, missing...)
		}
	}
	for _, d := range missing {
		l.dir(d, 0o755)
	}
}

func (l *layerWriter) file(name string, mode int64, data []byte) {
	l.parents(name)
	l.header(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data))}, data)
}

// link adds name as a hard link to target, an earlier file of the layer
// with mode: unpacking applies the link's mode to their inode.
func (l *layerWriter) link(name, target string, mode int64) {
	l.parents(name)
	l.header(&tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: mode}, nil)
}

// layer is the gzip-compressed layer.
func (l *layerWriter) layer() (v1.Layer, error) {
	if l.tw == nil {
		return nil, fmt.Errorf("an empty layer")
	}
	if l.err == nil {
		l.err = l.tw.Close()
	}
	if l.err != nil {
		return nil, fmt.Errorf("writing a layer: %w", l.err)
	}
	data := l.buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithCompressedCaching)
}

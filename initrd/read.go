package initrd

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Info is what Inspect finds in a guest image.
type Info struct {
	// HasInit says whether the archive has an /init.
	HasInit bool
	// Version is the content of VersionFile, "" when the image has none
	// (built without a version).
	Version string
	// Compression is the archive's compression.
	Compression Compression
}

// Inspect reads the guest image at path (plain or gzipped newc cpio) and
// reports whether it has an /init and which agent version it was built with.
func Inspect(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	info := Info{Compression: CompressionNone}
	var r io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return Info{}, fmt.Errorf("reading %s: %w", path, err)
		}
		defer zr.Close()
		r, info.Compression = zr, CompressionGzip
	}
	cr := cpio.NewReader(r)
	for {
		hdr, err := cr.Next()
		if errors.Is(err, io.EOF) {
			return info, nil
		}
		if err != nil {
			return Info{}, fmt.Errorf("reading %s: not a cpio archive: %w", path, err)
		}
		switch strings.TrimPrefix(hdr.Name, "/") {
		case "init":
			info.HasInit = true
		case VersionFile:
			b, err := io.ReadAll(io.LimitReader(cr, 4096))
			if err != nil {
				return Info{}, fmt.Errorf("reading %s: %w", path, err)
			}
			info.Version = strings.TrimSpace(string(b))
		}
	}
}

// Command mkinitrd builds the guest's initrd: a newc cpio archive whose /init
// is cocoon-agent.
//
//	mkinitrd -agent bin/cocoon-agent -o out/initrd.img [-compress none|gzip] [-version V]
//
// The output is reproducible: every entry has time SOURCE_DATE_EPOCH (0 when
// unset) and owner root, whatever the agent file's. It is written atomically.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cocoon-containers/cocoon/initrd"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkinitrd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkinitrd", flag.ContinueOnError)
	agent := fs.String("agent", "", "the cocoon-agent binary (statically linked), installed as /init")
	out := fs.String("o", "", "the initrd to write")
	compress := fs.String("compress", string(initrd.CompressionNone),
		"none or gzip (none boots faster under TCG: no decompression in the guest)")
	version := fs.String("version", "", "the agent's build version, recorded in the image for `cocoon-runtime env` and `check`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *agent == "" || *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("usage: mkinitrd -agent FILE -o FILE [-compress none|gzip]")
	}
	c, err := initrd.ParseCompression(*compress)
	if err != nil {
		return err
	}
	mtime, err := initrd.ModTime(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return err
	}
	return initrd.Build(initrd.Options{AgentPath: *agent, Output: *out, Compression: c, ModTime: mtime, Version: *version})
}

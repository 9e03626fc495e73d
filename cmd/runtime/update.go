package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	units "github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

var updateCommand = &cli.Command{
	Name:      "update",
	Usage:     "update container resource constraints",
	ArgsUsage: "<container-id>",
	Description: `update changes the cgroup limits of the container inside its guest, from
--resources (a LinuxResources JSON file, or - for stdin) and the per-field
flags, which take precedence.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "path to a file containing the resources to update or '-' to read from the standard input"},
		&cli.StringFlag{Name: "blkio-weight", Usage: "specifies per cgroup weight, range is from 10 to 1000"},
		&cli.StringFlag{Name: "cpu-period", Usage: "CPU CFS period to be used for hardcapping (in usecs). 0 to use system default"},
		&cli.StringFlag{Name: "cpu-quota", Usage: "CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period"},
		&cli.StringFlag{Name: "cpu-share", Aliases: []string{"cpu-shares"}, Usage: "CPU shares (relative weight vs. other containers)"},
		&cli.StringFlag{Name: "cpu-rt-period", Usage: "CPU realtime period to be used for hardcapping (in usecs)"},
		&cli.StringFlag{Name: "cpu-rt-runtime", Usage: "CPU realtime hardcap limit (in usecs)"},
		&cli.StringFlag{Name: "cpuset-cpus", Usage: "CPU(s) to use"},
		&cli.StringFlag{Name: "cpuset-mems", Usage: "Memory node(s) to use"},
		&cli.StringFlag{Name: "cpu-idle", Usage: "set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE"},
		&cli.StringFlag{Name: "memory", Usage: "memory limit (in bytes, or with a unit: 128m)"},
		&cli.StringFlag{Name: "memory-reservation", Usage: "memory reservation or soft_limit (in bytes)"},
		&cli.StringFlag{Name: "memory-swap", Usage: "total memory usage (memory + swap); set '-1' to enable unlimited swap"},
		&cli.StringFlag{Name: "kernel-memory", Usage: "accepted for compatibility; ignored, as by runc"},
		&cli.StringFlag{Name: "kernel-memory-tcp", Usage: "accepted for compatibility; ignored, as by runc"},
		&cli.IntFlag{Name: "pids-limit", Usage: "maximum number of pids allowed in the container"},
		&cli.StringFlag{Name: "l3-cache-schema", Usage: "accepted for compatibility; Intel RDT is not available in the VM"},
		&cli.StringFlag{Name: "mem-bw-schema", Usage: "accepted for compatibility; Intel RDT is not available in the VM"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, true); err != nil {
			return err
		}
		r, err := updateResources(c)
		if err != nil {
			return err
		}
		_, h, err := openContainer(c)
		if err != nil {
			return err
		}
		defer h.Close()
		return h.Update(c.Context, r)
	},
}

// updateResources reads --resources and applies the per-field flags.
func updateResources(c *cli.Context) (*specs.LinuxResources, error) {
	r := &specs.LinuxResources{}
	if path := c.String("resources"); path != "" {
		var in io.Reader = os.Stdin
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			in = f
		}
		if err := json.NewDecoder(in).Decode(r); err != nil {
			return nil, fmt.Errorf("decoding resources: %w", err)
		}
	}
	cpu := func() *specs.LinuxCPU {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		return r.CPU
	}
	mem := func() *specs.LinuxMemory {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		return r.Memory
	}
	for _, u := range []struct {
		flag string
		set  func(uint64)
	}{
		{"cpu-period", func(v uint64) { cpu().Period = &v }},
		{"cpu-rt-period", func(v uint64) { cpu().RealtimePeriod = &v }},
		{"cpu-share", func(v uint64) { cpu().Shares = &v }},
	} {
		if s := c.String(u.flag); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("invalid value for %s: %w", u.flag, err)
			}
			u.set(v)
		}
	}
	for _, u := range []struct {
		flag string
		set  func(int64)
	}{
		{"cpu-quota", func(v int64) { cpu().Quota = &v }},
		{"cpu-rt-runtime", func(v int64) { cpu().RealtimeRuntime = &v }},
		{"cpu-idle", func(v int64) { cpu().Idle = &v }},
	} {
		if s := c.String(u.flag); s != "" {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("invalid value for %s: %w", u.flag, err)
			}
			u.set(v)
		}
	}
	if s := c.String("blkio-weight"); s != "" {
		v, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("invalid value for blkio-weight: %w", err)
		}
		if v < 10 || v > 1000 {
			return nil, fmt.Errorf("invalid value for blkio-weight: %d is not between 10 and 1000", v)
		}
		w := uint16(v)
		if r.BlockIO == nil {
			r.BlockIO = &specs.LinuxBlockIO{}
		}
		r.BlockIO.Weight = &w
	}
	if s := c.String("cpuset-cpus"); s != "" {
		cpu().Cpus = s
	}
	if s := c.String("cpuset-mems"); s != "" {
		cpu().Mems = s
	}
	for _, u := range []struct {
		flag string
		set  func(int64)
	}{
		{"memory", func(v int64) { mem().Limit = &v }},
		{"memory-reservation", func(v int64) { mem().Reservation = &v }},
		{"memory-swap", func(v int64) { mem().Swap = &v }},
	} {
		if s := c.String(u.flag); s != "" {
			v, err := parseMemory(s)
			if err != nil {
				return nil, fmt.Errorf("invalid value for %s: %w", u.flag, err)
			}
			u.set(v)
		}
	}
	if c.IsSet("pids-limit") {
		limit := int64(c.Int("pids-limit"))
		r.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return r, nil
}

// parseMemory reads a byte count with an optional unit; -1 is unlimited.
func parseMemory(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	return units.RAMInBytes(s)
}

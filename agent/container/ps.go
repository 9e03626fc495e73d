package container

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ProcessInfo describes one process of a container, from /proc.
type ProcessInfo struct {
	Pid, Ppid int
	// UID is the real user ID, in the guest's user namespace.
	UID uint32
	// State is the one-letter state of /proc/<pid>/stat (R, S, D, Z, T...).
	State string
	// Cmdline is the command line with spaces between arguments, or
	// [comm] when it is empty (kernel threads, zombies).
	Cmdline string
	// CPUTicks is user plus system time; StartTicks the start time after
	// boot; both in clock ticks (USER_HZ).
	CPUTicks, StartTicks uint64
	// RSSBytes is the resident set size.
	RSSBytes uint64
}

// readProcesses reads the given PIDs under procRoot, sorted by PID. A process
// that has gone meanwhile is left out.
func readProcesses(procRoot string, pids []int) []ProcessInfo {
	var out []ProcessInfo
	pageSize := uint64(os.Getpagesize())
	for _, pid := range pids {
		if info, ok := readProcess(procRoot, pid, pageSize); ok {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out
}

func readProcess(procRoot string, pid int, pageSize uint64) (ProcessInfo, bool) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return ProcessInfo{}, false
	}
	info, ok := parseStat(stat, pageSize)
	if !ok {
		return ProcessInfo{}, false
	}
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		info.UID = parseStatusUID(status)
	}
	cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	cmdline = bytes.TrimRight(cmdline, "\x00")
	if len(cmdline) > 0 {
		info.Cmdline = string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	return info, true
}

// parseStat parses /proc/<pid>/stat: "pid (comm) state ppid ...". comm may
// hold spaces and parentheses, so fields are counted after the last ')'.
func parseStat(b []byte, pageSize uint64) (ProcessInfo, bool) {
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return ProcessInfo{}, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return ProcessInfo{}, false
	}
	comm := s[open+1 : end]
	// Fields from 3 (state) on; f[0] is field 3.
	f := strings.Fields(s[end+1:])
	if len(f) < 22 {
		return ProcessInfo{}, false
	}
	num := func(i int) uint64 { // i is the field number of proc(5)
		v, _ := strconv.ParseUint(f[i-3], 10, 64)
		return v
	}
	ppid, _ := strconv.Atoi(f[1])
	return ProcessInfo{
		Pid:        pid,
		Ppid:       ppid,
		State:      f[0],
		Cmdline:    "[" + comm + "]",
		CPUTicks:   num(14) + num(15),
		StartTicks: num(22),
		RSSBytes:   num(24) * pageSize,
	}, true
}

// parseStatusUID returns the real UID of /proc/<pid>/status's "Uid:" line.
func parseStatusUID(b []byte) uint32 {
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				v, _ := strconv.ParseUint(f[0], 10, 32)
				return uint32(v)
			}
		}
	}
	return 0
}

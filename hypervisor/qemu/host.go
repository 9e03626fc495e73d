package qemu

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// HostTSCkHz returns the host's TSC rate in kHz and where it was read. In
// order of trust: the kernel's tsc_freq_khz (some kernels), the kernel's own
// calibration in its log ("tsc: Refined TSC clocksource calibration" or "tsc:
// Detected"), then the first "cpu MHz" of /proc/cpuinfo, which on CPUs that
// scale their frequency may be the current rate rather than the TSC's.
func HostTSCkHz() (uint64, string, error) {
	const sysfs = "/sys/devices/system/cpu/cpu0/tsc_freq_khz"
	if b, err := os.ReadFile(sysfs); err == nil {
		if khz, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && khz > 0 {
			return khz, sysfs, nil
		}
	}
	if log, err := kernelLog(); err == nil {
		if khz := tscFromKernelLog(log); khz > 0 {
			return khz, "kernel log", nil
		}
	}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, "", fmt.Errorf("reading host tsc rate: %w", err)
	}
	if khz := tscFromCPUInfo(string(cpuinfo)); khz > 0 {
		return khz, "/proc/cpuinfo cpu MHz", nil
	}
	return 0, "", errors.New("reading host tsc rate: not in sysfs, the kernel log or /proc/cpuinfo")
}

// kernelLog reads the kernel's log buffer (as dmesg does).
func kernelLog() ([]byte, error) {
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil {
		return nil, fmt.Errorf("sizing kernel log: %w", err)
	}
	buf := make([]byte, n)
	m, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return nil, fmt.Errorf("reading kernel log: %w", err)
	}
	return buf[:m], nil
}

var tscLogLine = regexp.MustCompile(`tsc: (Refined TSC clocksource calibration: |Detected )([0-9]+(?:\.[0-9]+)?) MHz`)

// tscFromKernelLog finds the TSC rate the kernel measured, preferring its
// refined calibration to its first estimate.
func tscFromKernelLog(log []byte) uint64 {
	var detected, refined uint64
	for _, m := range tscLogLine.FindAllSubmatch(log, -1) {
		khz := mhzToKHz(string(m[2]))
		if string(m[1]) == "Detected " {
			detected = khz
		} else {
			refined = khz
		}
	}
	if refined != 0 {
		return refined
	}
	return detected
}

// tscFromCPUInfo returns the first "cpu MHz" of /proc/cpuinfo in kHz.
func tscFromCPUInfo(cpuinfo string) uint64 {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "cpu MHz" {
			return mhzToKHz(strings.TrimSpace(value))
		}
	}
	return 0
}

// mhzToKHz converts a decimal MHz figure such as "2445.404" to kHz without
// going through floating point; it returns 0 for malformed input.
func mhzToKHz(s string) uint64 {
	whole, frac, _ := strings.Cut(s, ".")
	frac = (frac + "000")[:3]
	w, err1 := strconv.ParseUint(whole, 10, 64)
	f, err2 := strconv.ParseUint(frac, 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return w*1000 + f
}

// supportsSandbox tells whether the QEMU binary was built with seccomp
// support. A binary linked against libseccomp has it, which reading its ELF
// header tells in well under a millisecond; any other binary (a static
// build, say) is asked: only then does its help list -sandbox. Starting
// QEMU for its help costs 20–40 ms on every sandbox start.
func supportsSandbox(ctx context.Context, binary string) (bool, error) {
	if linksSeccomp(binary) {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "-help").Output()
	if err != nil {
		return false, fmt.Errorf("probing %s -help: %w", binary, err)
	}
	for _, line := range bytes.Split(out, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("-sandbox ")) {
			return true, nil
		}
	}
	return false, nil
}

// linksSeccomp says whether the ELF file at path names libseccomp among
// its shared libraries; false when it cannot tell.
func linksSeccomp(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return false
	}
	for _, l := range libs {
		if strings.HasPrefix(l, "libseccomp.so") {
			return true
		}
	}
	return false
}

// isELF says whether the file at path starts with the ELF magic: an
// uncompressed vmlinux rather than a bzImage.
func isELF(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	return bytes.Equal(magic, []byte("\x7fELF")), nil
}

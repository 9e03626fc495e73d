package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestTSCFromKernelLog(t *testing.T) {
	tests := map[string]struct {
		log  string
		want uint64
	}{
		"detected": {
			log:  "<6>[    0.000024] tsc: Detected 2445.404 MHz processor\n",
			want: 2445404,
		},
		"refined wins": {
			log: "<6>[    0.000024] tsc: Detected 2445.404 MHz processor\n" +
				"<6>[    1.2] tsc: Refined TSC clocksource calibration: 2445.399 MHz\n",
			want: 2445399,
		},
		"detected tsc": {log: "tsc: Detected 3000.000 MHz TSC\n", want: 3000000},
		"absent":       {log: "clocksource: Switched to clocksource tsc\n", want: 0},
	}
	for name, tc := range tests {
		if got := tscFromKernelLog([]byte(tc.log)); got != tc.want {
			t.Errorf("%s: tscFromKernelLog = %d, want %d", name, got, tc.want)
		}
	}
}

func TestTSCFromCPUInfo(t *testing.T) {
	info := "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2445.404\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.000\n"
	if got := tscFromCPUInfo(info); got != 2445404 {
		t.Errorf("tscFromCPUInfo = %d, want 2445404", got)
	}
	if got := tscFromCPUInfo("processor\t: 0\n"); got != 0 {
		t.Errorf("tscFromCPUInfo without cpu MHz = %d", got)
	}
}

func TestMHzToKHz(t *testing.T) {
	for in, want := range map[string]uint64{
		"2445.404":  2445404,
		"2445.4":    2445400,
		"2445":      2445000,
		"2445.4049": 2445404,
		"x":         0,
		"1.x":       0,
	} {
		if got := mhzToKHz(in); got != want {
			t.Errorf("mhzToKHz(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestHostTSCkHz(t *testing.T) {
	khz, from, err := HostTSCkHz()
	if err != nil {
		t.Skipf("host tsc rate unknown here: %v", err)
	}
	if khz < 100000 {
		t.Errorf("HostTSCkHz = %d kHz from %s: implausible", khz, from)
	}
	t.Logf("host tsc: %d kHz from %s", khz, from)
}

func TestLinksSeccomp(t *testing.T) {
	const qemuBinary = "/usr/bin/qemu-system-x86_64"
	if _, err := exec.LookPath(qemuBinary); err != nil {
		t.Skipf("%s: %v", qemuBinary, err)
	}
	// The ELF shortcut must agree with the binary's own help.
	help, err := exec.Command(qemuBinary, "-help").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Contains(string(help), "\n-sandbox ")
	if got := linksSeccomp(qemuBinary); got && !want {
		t.Errorf("linksSeccomp(%s) = true, but its help lists no -sandbox", qemuBinary)
	}
	got, err := supportsSandbox(context.Background(), qemuBinary)
	if err != nil || got != want {
		t.Errorf("supportsSandbox(%s) = %v, %v; want %v", qemuBinary, got, err, want)
	}
	notELF := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if linksSeccomp(notELF) {
		t.Error("linksSeccomp of a script = true")
	}
	if linksSeccomp(filepath.Join(t.TempDir(), "missing")) {
		t.Error("linksSeccomp of a missing file = true")
	}
}

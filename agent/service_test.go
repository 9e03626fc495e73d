package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cocoon-containers/cocoon/api"
)

func TestReadUptime(t *testing.T) {
	tests := map[string]struct {
		content string
		want    float64
		wantErr bool
	}{
		"normal":  {content: "12.34 45.67\n", want: 12.34},
		"one":     {content: "7.5", want: 7.5},
		"garbage": {content: "abc def\n", wantErr: true},
		"empty":   {content: "", wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "uptime")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readUptime(path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("readUptime error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("readUptime = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTransportFromParams(t *testing.T) {
	tests := map[string]struct {
		cmdline string
		want    Transport
		wantErr bool
	}{
		"default": {cmdline: "console=ttyS0", want: &SerialTransport{SysRoot: "/sys", DevRoot: "/dev", PortName: api.AgentPortName}},
		"serial":  {cmdline: "cocoon.transport=serial", want: &SerialTransport{SysRoot: "/sys", DevRoot: "/dev", PortName: api.AgentPortName}},
		"vsock":   {cmdline: "cocoon.transport=vsock", want: &VsockTransport{Port: api.DefaultVsockPort}},
		"vsock port": {
			cmdline: "cocoon.transport=vsock cocoon.vsock_port=2048",
			want:    &VsockTransport{Port: 2048},
		},
		"bad port":  {cmdline: "cocoon.transport=vsock cocoon.vsock_port=x", wantErr: true},
		"unknown":   {cmdline: "cocoon.transport=carrier-pigeon", wantErr: true},
		"huge port": {cmdline: "cocoon.transport=vsock cocoon.vsock_port=4294967296", wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := TransportFromParams(ParseKernelParams(tt.cmdline), testLog(t))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if s, ok := got.(*SerialTransport); ok {
				s.Log = nil
			}
			if tt.want != nil && !equalTransport(got, tt.want) {
				t.Errorf("transport = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func equalTransport(a, b Transport) bool {
	switch a := a.(type) {
	case *SerialTransport:
		b, ok := b.(*SerialTransport)
		return ok && *a == *b
	case *VsockTransport:
		b, ok := b.(*VsockTransport)
		return ok && *a == *b
	}
	return false
}

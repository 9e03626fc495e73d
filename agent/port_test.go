package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeSysfs makes sysRoot/class/virtio-ports/<dev>/name for every port.
func fakeSysfs(t *testing.T, ports map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for dev, name := range ports {
		dir := filepath.Join(root, "class", "virtio-ports", dev)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "name"), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestFindPort(t *testing.T) {
	tests := map[string]struct {
		ports   map[string]string
		want    string
		wantErr error
	}{
		"only port":  {ports: map[string]string{"vport0p1": "agent.channel.0"}, want: "vport0p1"},
		"among many": {ports: map[string]string{"vport0p1": "org.qemu.guest_agent.0", "vport0p2": "agent.channel.0", "vport1p1": ""}, want: "vport0p2"},
		"absent":     {ports: map[string]string{"vport0p1": "other"}, wantErr: ErrPortNotFound},
		"no ports":   {ports: nil, wantErr: ErrPortNotFound},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := FindPort(fakeSysfs(t, tt.ports), "agent.channel.0")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FindPort error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("FindPort = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFindPortUnnamed(t *testing.T) {
	// A port whose name the host has not sent yet has no name file.
	root := fakeSysfs(t, map[string]string{"vport0p2": "agent.channel.0"})
	if err := os.MkdirAll(filepath.Join(root, "class", "virtio-ports", "vport0p1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := FindPort(root, "agent.channel.0"); err != nil || got != "vport0p2" {
		t.Errorf("FindPort = %q, %v", got, err)
	}
}

func TestWaitPort(t *testing.T) {
	sys := fakeSysfs(t, nil)
	dev := t.TempDir()
	go func() {
		// The name appears first, the device node a little later.
		time.Sleep(30 * time.Millisecond)
		dir := filepath.Join(sys, "class", "virtio-ports", "vport0p1")
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, "name"), []byte("agent.channel.0\n"), 0o644)
		time.Sleep(30 * time.Millisecond)
		_ = os.WriteFile(filepath.Join(dev, "vport0p1"), nil, 0o600)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := WaitPort(ctx, sys, dev, "agent.channel.0")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dev, "vport0p1"); got != want {
		t.Errorf("WaitPort = %q, want %q", got, want)
	}
}

func TestWaitPortTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := WaitPort(ctx, fakeSysfs(t, nil), t.TempDir(), "agent.channel.0")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrPortNotFound) {
		t.Errorf("WaitPort error = %v, want deadline exceeded and port not found", err)
	}
}

// scriptedDev returns the results of its script, one per read, then blocks.
type scriptedDev struct {
	*fakePortDev
	reads chan readResult
}

type readResult struct {
	data string
	err  error
}

func (d *scriptedDev) Read(b []byte) (int, error) {
	r := <-d.reads
	return copy(b, r.data), r.err
}

func newScriptedPort(t *testing.T, script ...readResult) (*serialPort, *scriptedDev) {
	d := &scriptedDev{fakePortDev: newFakePortDev(), reads: make(chan readResult, len(script))}
	for _, r := range script {
		d.reads <- r
	}
	p := newSerialPort(d, testLog(t))
	p.pollMin, p.pollMax = time.Millisecond, 2*time.Millisecond
	return p, d
}

func TestPortSessionWaitsForHost(t *testing.T) {
	// Reads return 0 bytes until the host connects: the session must wait,
	// not end. After data, a 0-byte read means the host left: io.EOF.
	p, _ := newScriptedPort(t,
		readResult{err: io.EOF}, readResult{}, readResult{err: io.EOF},
		readResult{data: "hello"},
		readResult{err: io.EOF},
	)
	s := p.session()
	buf := make([]byte, 16)
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("first Read = %q, %v; want hello", buf[:n], err)
	}
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the host left = %d, %v; want 0, EOF", n, err)
	}
	if s.err() != nil {
		t.Errorf("a disconnection recorded as a port error: %v", s.err())
	}
}

func TestPortSessionHardError(t *testing.T) {
	boom := errors.New("no such device")
	p, _ := newScriptedPort(t, readResult{err: boom})
	s := p.session()
	if _, err := s.Read(make([]byte, 4)); !errors.Is(err, boom) {
		t.Fatalf("Read error = %v, want %v", err, boom)
	}
	if !errors.Is(s.err(), boom) {
		t.Errorf("session error = %v", s.err())
	}
}

func TestPortSessionCloseInterruptsRead(t *testing.T) {
	dev := newFakePortDev()
	host := dev.connect()
	defer host.Close()
	p := newSerialPort(dev, testLog(t))
	s := p.session()
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 4)) // blocks: the host sends nothing
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close() // must interrupt the read and wait for it
	// Read has returned once Close does; the goroutine may still be on its
	// way to the channel, hence the short grace.
	select {
	case err := <-done:
		if err != io.EOF {
			t.Errorf("interrupted Read error = %v, want EOF", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Close returned while the read was still running")
	}
	// The next session works on the same device: deadlines were reset.
	s2 := p.session()
	go func() { _, _ = host.Write([]byte("next")) }()
	buf := make([]byte, 4)
	if n, err := s2.Read(buf); err != nil || string(buf[:n]) != "next" {
		t.Fatalf("next session Read = %q, %v", buf[:n], err)
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Error("Write on a closed session succeeded")
	}
}

func TestPortSessionCloseInterruptsWrite(t *testing.T) {
	dev := newFakePortDev() // never connected: writes block
	p := newSerialPort(dev, testLog(t))
	s := p.session()
	done := make(chan error, 1)
	go func() {
		_, err := s.Write([]byte("stuck"))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("interrupted Write succeeded")
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not interrupt the write")
	}
	dev.mu.Lock()
	defer dev.mu.Unlock()
	if !dev.wdl.IsZero() || !dev.rdl.IsZero() {
		t.Error("Close left deadlines on the port")
	}
}

// yamuxFrame encodes a yamux header, and body for data frames.
func yamuxFrame(typ byte, flags uint16, id uint32, body string, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint32(h[4:], id)
	if typ == yamuxTypeData {
		length = uint32(len(body))
	}
	binary.BigEndian.PutUint32(h[8:], length)
	return append(h, body...)
}

func TestPortSessionSpotsNewHost(t *testing.T) {
	syn := func(id uint32) []byte { return yamuxFrame(yamuxTypeWindowUpdate, yamuxFlagSYN, id, "", 0) }
	data := func(id uint32, body string) []byte { return yamuxFrame(yamuxTypeData, 0, id, body, 0) }
	// A data frame whose body looks like a SYN for stream 1: only headers
	// count, not what the data looks like.
	tricky := data(3, string(syn(1)))
	first := bytes.Join([][]byte{syn(1), data(1, "hello"), syn(3), tricky, yamuxFrame(2, yamuxFlagSYN, 0, "", 7)}, nil)
	second := bytes.Join([][]byte{syn(1), data(1, "again")}, nil)
	all := append(append([]byte(nil), first...), second...)

	// Whatever the read sizes, the first session returns exactly the first
	// connection's bytes, and the next one the rest.
	for _, chunk := range []int{1, 5, 11, 12, 13, 64, len(all)} {
		t.Run(fmt.Sprintf("reads of %d", chunk), func(t *testing.T) {
			var script []readResult
			for off := 0; off < len(all); off += chunk {
				script = append(script, readResult{data: string(all[off:min(off+chunk, len(all))])})
			}
			p, _ := newScriptedPort(t, script...)
			s1 := p.session()
			got, err := io.ReadAll(s1)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, first) {
				t.Fatalf("first session read %q, want %q", got, first)
			}
			if !s1.replaced() {
				t.Error("first session not marked replaced")
			}
			s1.Close()
			s2 := p.session()
			buf := make([]byte, len(second))
			if _, err := io.ReadFull(s2, buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, second) {
				t.Fatalf("second session read %q, want %q", buf, second)
			}
		})
	}
}

func TestPortSessionPassesGarbage(t *testing.T) {
	// Bytes that are not yamux go to yamux, which fails on them; the
	// tracker must not hold them back waiting for a full header.
	p, _ := newScriptedPort(t, readResult{data: "GET"})
	buf := make([]byte, 8)
	n, err := p.session().Read(buf)
	if err != nil || string(buf[:n]) != "GET" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}

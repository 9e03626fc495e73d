package api

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestStreamHeaderRoundTrip(t *testing.T) {
	for name, h := range map[string]StreamHeader{
		"rpc":      {Kind: StreamRPC},
		"stdout":   {Kind: StreamStdio, ContainerID: "c1", Stdio: Stdout},
		"exec tty": {Kind: StreamStdio, ContainerID: "c1", ExecID: "e-42", Stdio: Terminal},
		"forward":  {Kind: StreamPortForward, Port: 8080},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteStreamHeader(&buf, h); err != nil {
				t.Fatal(err)
			}
			buf.WriteString("payload")
			got, err := ReadStreamHeader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if got != h {
				t.Fatalf("got %+v, want %+v", got, h)
			}
			if rest := buf.String(); rest != "payload" {
				t.Fatalf("header consumed payload: %q left", rest)
			}
		})
	}
}

func TestStreamHeaderRejects(t *testing.T) {
	valid := func(h StreamHeader) []byte {
		var buf bytes.Buffer
		if err := WriteStreamHeader(&buf, h); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	badKind := valid(StreamHeader{Kind: StreamRPC})
	badKind[4] = 9
	badStdio := valid(StreamHeader{Kind: StreamStdio})
	badStdio[5] = 7
	for name, in := range map[string][]byte{
		"magic":     []byte("HTTP/1.1 200"),
		"kind":      badKind,
		"stdio":     badStdio,
		"long id":   append([]byte("CCN1\x02\x01\xff\xff"), make([]byte, 10)...),
		"truncated": valid(StreamHeader{Kind: StreamStdio, ContainerID: "abc"})[:9],
		"no port":   valid(StreamHeader{Kind: StreamPortForward, Port: 80})[:10],
		"port 0":    valid(StreamHeader{Kind: StreamPortForward}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadStreamHeader(bytes.NewReader(in)); err == nil {
				t.Fatal("accepted a bad header")
			}
		})
	}
	err := WriteStreamHeader(&bytes.Buffer{}, StreamHeader{Kind: StreamStdio, ContainerID: strings.Repeat("x", MaxStreamIDLen+1)})
	if !errors.Is(err, ErrBadStreamHeader) {
		t.Fatalf("long id: got %v", err)
	}
}

package conmontest

import (
	"slices"
	"testing"
)

func TestParseLog(t *testing.T) {
	log := "2026-01-01T00:00:00.000000000+00:00 stdout P par\n" +
		"2026-01-01T00:00:00.000000001+00:00 stdout F tial\n" +
		"2026-01-01T00:00:00.000000002+00:00 stderr F oops\n" +
		"garbage\n"
	out, errOut := ParseLog([]byte(log))
	if string(out) != "partial\n" || string(errOut) != "oops\n" {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
}

// TestArgs pins conmon's argv to CRI-O's: --root=R as one runtime
// argument, the pid files in the bundle, -t or -i.
func TestArgs(t *testing.T) {
	r := &Runtime{Conmon: "conmon", Path: "/rt", Root: "/run/r", ExitDir: "/x", SocketDir: "/s"}
	c := &Container{ID: "id", Name: "n", Bundle: "/b", LogPath: "/l", Dir: "/d", Stdin: true}
	want := []string{"-b", "/b", "-c", "id", "--exit-dir", "/x", "-l", "/l", "--log-level", "info",
		"-n", "n", "-P", "/b/conmon-pidfile", "-p", "/b/pidfile", "--persist-dir", "/d", "-r", "/rt",
		"--runtime-arg", "--root=/run/r", "--socket-dir-path", "/s", "--syslog", "-u", "id",
		"--leave-stdin-open", "-i"}
	if got := r.CreateArgs(c); !slices.Equal(got, want) {
		t.Errorf("create: %q\nwant    %q", got, want)
	}
	c.Terminal = true
	want = []string{"-c", "id", "-n", "n", "-r", "/rt", "-p", "/p", "-e", "-l", "/el",
		"--socket-dir-path", "/s", "--log-level", "info", "--sync", "--log-global-size-max", "16777216",
		"-t", "-T", "5", "--exec-process-spec", "/f", "--runtime-arg", "--root=/run/r"}
	if got := r.ExecSyncArgs(c, "/p", "/el", "/f", 5); !slices.Equal(got, want) {
		t.Errorf("exec-sync: %q\nwant       %q", got, want)
	}
	if got, want := r.RuntimeArgs("kill", "id", "KILL"), []string{"--root", "/run/r", "kill", "id", "KILL"}; !slices.Equal(got, want) {
		t.Errorf("runtime: %q, want %q", got, want)
	}
}

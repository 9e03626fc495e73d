//go:build integration

package runtime_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runtimeUnderTest runs a bundle to its end in the foreground, as `runc
// run` does; kill, when set, is called once the container runs.
type runtimeUnderTest struct {
	name  string
	bin   string
	args  func(args ...string) []string
	state func(t *testing.T, id string) string
}

func runtimes(t *testing.T) []runtimeUnderTest {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc is needed for the comparison (apt-get install runc, packaging/deps.sh): %v", err)
	}
	runcRoot := filepath.Join(t.TempDir(), "runc")
	runcArgs := func(args ...string) []string { return append([]string{"--root", runcRoot}, args...) }
	return []runtimeUnderTest{
		{"runc", runc, runcArgs, func(t *testing.T, id string) string {
			r := run(t, cmdOpts{}, runc, runcArgs("state", id)...)
			return r.stdout
		}},
		{"cocoon", e.runtime, rtArgs, func(t *testing.T, id string) string {
			return rt(t, "state", id).stdout
		}},
	}
}

// TestSameAsRunc runs the same bundles with runc and cocoon-runtime:
// stdout, stderr and exit status agree, but for the kernel, which is the
// guest's.
func TestSameAsRunc(t *testing.T) {
	rts := runtimes(t)
	for i, tc := range []struct {
		name   string
		script string
		kill   bool
	}{
		{"Output", "echo hello; echo oops >&2; echo $((6*7))", false},
		{"Exit1", "echo before; false", false},
		{"Exit3", "echo to-stderr >&2; exit 3", false},
		{"Identity", "id; hostname; pwd; echo $PATH; ls /", false},
		{"SIGKILL", "echo started; exec sleep 600", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle := writeBundle(t, baseSpec(t, "sh", "-c", tc.script))
			var results []result
			for _, r := range rts {
				id := fmt.Sprintf("cmp%d-%s", i, r.name)
				cmd, res := command(t, cmdOpts{}, r.bin, r.args("run", "--bundle", bundle, id)...)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				if tc.kill {
					deadline := time.Now().Add(commandTimeout)
					for !strings.Contains(r.state(t, id), `"running"`) {
						if time.Now().After(deadline) {
							t.Fatalf("%s: %s never ran", r.name, id)
						}
						time.Sleep(100 * time.Millisecond)
					}
					time.Sleep(300 * time.Millisecond) // let it print
					if k := run(t, cmdOpts{}, r.bin, r.args("kill", id, "KILL")...); k.code != 0 {
						t.Fatalf("%s kill: %v", r.name, k)
					}
				}
				_ = cmd.Wait()
				got := res()
				t.Logf("%s: %v", r.name, got)
				results = append(results, got)
			}
			if results[0] != results[1] {
				t.Errorf("runc %v\ncocoon %v", results[0], results[1])
			}
			if tc.kill && results[1].code != 137 {
				t.Errorf("status after SIGKILL %d, want 137", results[1].code)
			}
		})
	}
	t.Run("KernelDiffers", func(t *testing.T) {
		bundle := writeBundle(t, baseSpec(t, "uname", "-r"))
		var kernels []string
		for _, r := range rts {
			got := run(t, cmdOpts{}, r.bin, r.args("run", "--bundle", bundle, "uname-"+r.name)...)
			if got.code != 0 {
				t.Fatalf("%s: %v", r.name, got)
			}
			kernels = append(kernels, strings.TrimSpace(got.stdout))
		}
		if kernels[0] == kernels[1] || kernels[1] == "" {
			t.Errorf("runc's kernel %q, cocoon's %q: want the guest's", kernels[0], kernels[1])
		}
		t.Logf("host %s, guest %s", kernels[0], kernels[1])
	})
}

package agent

import (
	"os"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runc init's namespace setup
)

// TestMain makes the test binary its own "runc init", as cmd/agent is:
// libcontainer re-executes it with the argument "init" to start every
// container process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // does not return
	}
	os.Exit(m.Run())
}

package shimv2

import (
	"os"
	"testing"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// TestMain runs the tests as root, or in a user namespace of their own
// (bind mounts into the fake sandboxes' shares).
func TestMain(m *testing.M) {
	os.Exit(testutil.MainInUserNS(m))
}

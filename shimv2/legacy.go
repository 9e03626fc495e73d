package shimv2

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/protobuf/proto"
)

// ttrpcAddressEnv names containerd's TTRPC address (where events go) in a
// shim's environment; CRI-O leaves it empty.
const ttrpcAddressEnv = "TTRPC_ADDRESS"

// maxStdin bounds what the start command reads from stdin, as the shim
// library bounds it.
const maxStdin = 10 << 20

// startFlags are the flags with which containerd runs a shim binary, as the
// shim library parses them, and the command after them.
type startFlags struct {
	namespace, id, address string
	debug                  bool
	action                 string
}

// parseStartFlags parses args (without the program name) as the shim
// library does; false when they do not parse.
func parseStartFlags(args []string) (startFlags, bool) {
	var f startFlags
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&f.debug, "debug", false, "")
	for _, name := range []string{"v", "version", "info"} {
		fs.Bool(name, false, "")
	}
	fs.StringVar(&f.namespace, "namespace", "", "")
	fs.StringVar(&f.id, "id", "", "")
	fs.StringVar(&f.address, "address", "", "")
	for _, name := range []string{"socket", "debug-socket", "bundle", "publish-binary"} {
		fs.String(name, "", "")
	}
	if err := fs.Parse(args); err != nil {
		return startFlags{}, false
	}
	f.action = fs.Arg(0)
	return f, true
}

// isBootstrap reports whether data, the start command's stdin, holds
// bootstrap parameters for shim id of namespace ns, as containerd 2.3 and
// later send them (the shim library's own test).
func isBootstrap(data []byte, id, ns string) bool {
	var params bootapi.BootstrapParams
	if len(data) == 0 || proto.Unmarshal(data, &params) != nil {
		return false
	}
	return params.GetInstanceID() == id && params.GetNamespace() == ns
}

// RunLegacyStart answers the start command of a containerd older than 2.3
// (1.6, 1.7, 2.0 to 2.2), whose protocol the shim library of 2.3 and later
// no longer speaks: those send the runtime options (or nothing) on stdin,
// not bootstrap parameters, and read the shim's address, as text, from its
// stdout. args are the program's arguments without its name. It returns
// false for any other command, and for a containerd that sends bootstrap
// parameters; then read is what it read of stdin, to be given back to the
// shim library.
func RunLegacyStart(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) (handled bool, read []byte, err error) {
	f, ok := parseStartFlags(args)
	if !ok || f.action != "start" {
		return false, nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(stdin, maxStdin))
	if err != nil {
		return true, nil, fmt.Errorf("reading stdin: %w", err)
	}
	if isBootstrap(data, f.id, f.namespace) {
		return false, data, nil
	}
	if f.namespace == "" {
		return true, nil, fmt.Errorf("shim namespace cannot be empty")
	}
	ctx = namespaces.WithNamespace(ctx, f.namespace)
	address, err := startShim(ctx, f.id, f.address, os.Getenv(ttrpcAddressEnv), "", f.debug)
	if err != nil {
		return true, nil, err
	}
	_, err = io.Copy(stdout, bytes.NewReader([]byte(address)))
	return true, nil, err
}

package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// Templates (hypervisor.Template) use QEMU's migration with the
// x-ignore-shared capability, as Kata's VM templating does: the guest RAM
// is a shared file-backed memory backend, so the migration stream carries
// only the device state and skips the RAM; a clone maps the same file
// privately and loads the device state with -incoming defer.

var _ hypervisor.Saver = (*VM)(nil)

// migratePoll is the pause between two looks at a migration's progress.
const migratePoll = 2 * time.Millisecond

// ignoreShared is the argument of migrate-set-capabilities that leaves
// shared RAM out of the migration stream.
var ignoreShared = map[string]any{
	"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
}

// migrationInfo is the part of query-migrate's return value used here.
type migrationInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

// Save stops the guest, writes its device state to the template's state
// file and stops QEMU. The VM must have been started with a
// hypervisor.Template whose Restore is false.
func (v *VM) Save(ctx context.Context) error {
	if v.saveFD == 0 {
		return errors.New("saving vm: it was not started as a template")
	}
	if err := v.command(ctx, "saving vm", "stop"); err != nil {
		return err
	}
	if err := executeArgs(ctx, v.dial, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		return fmt.Errorf("saving vm: %w", err)
	}
	if err := v.migrateToFile(ctx); err != nil {
		return fmt.Errorf("saving vm: %w", err)
	}
	for {
		var info migrationInfo
		if err := execute(ctx, v.dial, "query-migrate", &info); err != nil {
			return fmt.Errorf("saving vm: %w", err)
		}
		switch info.Status {
		case "completed":
			if err := v.Stop(ctx); err != nil {
				return fmt.Errorf("saving vm: %w", err)
			}
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("saving vm: migration %s: %s", info.Status, info.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("saving vm: migration %s: %w", info.Status, ctx.Err())
		case <-time.After(migratePoll):
		}
	}
}

// migrateToFile starts the migration into the state file, whose
// descriptor is passed over the monitor connection that then runs migrate:
// into an fdset (add-fd) for a "file:" migration from QEMU 9.1, as a named
// descriptor (getfd) for QEMU 7.2's "fd:" one, which 9.1 deprecates for
// plain files.
func (v *VM) migrateToFile(ctx context.Context) error {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", v.proc.pid, v.saveFD), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening the state file: %w", err)
	}
	defer f.Close()
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: filepath.Join(v.dir, QMPSocketName), Net: "unix"})
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	r := bufio.NewReader(conn)
	// reply reads up to the next return or error, skipping the greeting
	// and events.
	reply := func() error {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return fmt.Errorf("qmp: %w", err)
			}
			var m struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if err := json.Unmarshal(line, &m); err != nil {
				return fmt.Errorf("qmp: %w", err)
			}
			if m.Error != nil {
				return fmt.Errorf("qmp: %s", m.Error.Desc)
			}
			if m.Return != nil {
				return nil
			}
		}
	}
	send := func(cmd string, args any, fd *os.File) error {
		b, err := json.Marshal(map[string]any{"execute": cmd, "arguments": args})
		if err != nil {
			return err
		}
		var oob []byte
		if fd != nil {
			oob = unix.UnixRights(int(fd.Fd()))
		}
		if _, _, err := conn.WriteMsgUnix(b, oob, nil); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		if err := reply(); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		return nil
	}
	if err := send("qmp_capabilities", map[string]any{}, nil); err != nil {
		return err
	}
	if v.version.fileMigration() {
		if err := send("add-fd", map[string]any{"fdset-id": templateFDSet}, f); err != nil {
			return err
		}
		return send("migrate", map[string]any{"uri": fmt.Sprintf("file:/dev/fdset/%d", templateFDSet)}, nil)
	}
	if err := send("getfd", map[string]any{"fdname": "template"}, f); err != nil {
		return err
	}
	return send("migrate", map[string]any{"uri": "fd:template"}, nil)
}

// restore loads a template's device state from descriptor fd into a QEMU
// started with -incoming defer, and returns once the guest runs. QEMU
// exits when the state does not load (a corrupt or foreign file).
func (v *VM) restore(ctx context.Context, fd int) error {
	if err := executeArgs(ctx, v.dial, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		return fmt.Errorf("restoring vm: %w", err)
	}
	uri := "fd:" + strconv.Itoa(fd)
	if v.version.fileMigration() {
		// The descriptor is in the fdset that -add-fd made.
		uri = fmt.Sprintf("file:/dev/fdset/%d", templateFDSet)
	}
	if err := executeArgs(ctx, v.dial, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		return fmt.Errorf("restoring vm: %w", err)
	}
	for {
		if v.proc.exitedNow() {
			return fmt.Errorf("restoring vm: %w", v.proc.exitError())
		}
		var info statusInfo
		err := execute(ctx, v.dial, "query-status", &info)
		switch {
		case err != nil && v.proc.exitedNow():
			return fmt.Errorf("restoring vm: %w", v.proc.exitError())
		case err != nil:
			return fmt.Errorf("restoring vm: %w", err)
		case info.Running:
			return nil
		case info.Status != "inmigrate":
			// Loaded but not started (paused): start it.
			if err := v.command(ctx, "restoring vm", "cont"); err != nil {
				return err
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restoring vm: %w", ctx.Err())
		case <-v.proc.exited:
		case <-time.After(migratePoll):
		}
	}
}

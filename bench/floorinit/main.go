// Command floorinit is the /init of the benchmark's floor image: the moment
// the kernel hands over it says so on the agent port and powers the guest
// off, so that booting it measures the cost of the VM and kernel alone, the
// floor under cocoon's boot time.
package main

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
)

func main() {
	_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	_ = unix.Mount("sysfs", "/sys", "sysfs", 0, "")
	names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, n := range names {
		if b, _ := os.ReadFile(n); strings.TrimSpace(string(b)) == api.AgentPortName {
			if f, err := os.OpenFile("/dev/"+filepath.Base(filepath.Dir(n)), os.O_RDWR, 0); err == nil {
				// Writes fail until the host end is connected, and reads
				// return nothing; wait for the host's acknowledgement so
				// the line is not lost with the port.
				for _, err := f.Write([]byte("up\n")); err != nil; _, err = f.Write([]byte("up\n")) {
					time.Sleep(time.Millisecond)
				}
				for n, _ := f.Read(make([]byte, 1)); n == 0; n, _ = f.Read(make([]byte, 1)) {
					time.Sleep(time.Millisecond)
				}
			}
		}
	}
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Without ACPI power-off, a reboot ends QEMU too (it runs with -no-reboot).
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

package agent

import (
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// PowerOff syncs file systems and powers the guest off. QEMU exits when the
// guest powers off (through ACPI on pc/q35). If the guest is still running
// 2 s later (no ACPI, or the call failed), it reboots instead: QEMU runs with
// -no-reboot, so that exits it too. It does not return.
func PowerOff(log *logrus.Entry) {
	unix.Sync()
	// The fallback runs on its own thread in case the power-off call hangs.
	go func() {
		time.Sleep(2 * time.Second)
		log.Warn("still running after power-off; rebooting")
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
			log.WithError(err).Error("rebooting")
		}
	}()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		log.WithError(err).Error("powering off")
	}
	select {}
}

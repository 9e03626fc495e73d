package agent

import "testing"

func TestRootMount(t *testing.T) {
	tests := map[string]struct {
		mountinfo  string
		selfParent bool
	}{
		"initramfs": {
			mountinfo:  "1 1 0:2 / / rw - rootfs rootfs rw\n22 1 0:21 / /proc rw,nosuid - proc proc rw\n",
			selfParent: true,
		},
		"moved off the initramfs": {
			mountinfo:  "25 1 0:2 / / rw - rootfs rootfs rw\n22 25 0:21 / /proc rw,nosuid - proc proc rw\n",
			selfParent: false,
		},
		"disk root, overmounted": {
			mountinfo:  "20 0 8:1 / / rw - ext4 /dev/sda1 rw\n30 20 0:40 / / rw - overlay overlay rw\n",
			selfParent: false,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			m, ok := rootMount(tt.mountinfo)
			if !ok {
				t.Fatal("no root mount")
			}
			if (m.id == m.parent) != tt.selfParent {
				t.Errorf("root mount %+v", m)
			}
		})
	}
}

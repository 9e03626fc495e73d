package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// inUserNSEnv marks the test binary that MainInUserNS started again.
const inUserNSEnv = "COCOON_TEST_IN_USERNS"

// MainInUserNS runs a package's tests that need root's powers over mounts
// (a sandbox's share, the bind mounts of a container's root file system)
// without root: as root it runs them as they are; as another user it runs
// the test binary again in a user namespace where that user is root, with
// a mount namespace of its own, where such mounts are allowed on the user's
// own directories. Where the kernel refuses unprivileged user namespaces,
// the tests run as they are, and those that need root skip, saying so
// (RequireRoot). Call it from TestMain: os.Exit(testutil.MainInUserNS(m)).
func MainInUserNS(m *testing.M) int {
	if os.Geteuid() == 0 || os.Getenv(inUserNSEnv) != "" {
		return m.Run()
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), inUserNSEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "no user namespace for the tests that need root (%v): they skip\n", err)
	return m.Run()
}

// RequireRoot skips t, saying why, unless it runs as root (in its own user
// namespace counts: MainInUserNS).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, or an unprivileged user namespace (see testutil.MainInUserNS), for bind mounts")
	}
}

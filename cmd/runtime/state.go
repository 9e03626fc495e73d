package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/container"
)

// containerState is runc's output of state and list --format json.
type containerState struct {
	Version     string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

// stateOf reports rec as runc does: the PID is the relay's while it runs,
// 0 once the container has stopped.
func stateOf(rec *container.Record) containerState {
	s := containerState{
		Version:     specs.Version,
		ID:          rec.ID,
		Status:      string(rec.CurrentStatus()),
		Bundle:      rec.Bundle,
		Rootfs:      rec.Rootfs,
		Created:     rec.Created,
		Annotations: rec.Annotations,
		Owner:       "root",
	}
	if s.Status != string(container.Stopped) {
		s.Pid = rec.Pid
	}
	return s
}

var stateCommand = &cli.Command{
	Name:      "state",
	Usage:     "output the state of a container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, true); err != nil {
			return err
		}
		id, err := containerID(c)
		if err != nil {
			return err
		}
		rt := recordsOnly(c)
		rec, err := rt.Load(id)
		if err != nil {
			return err
		}
		if rt.Unresponsive(rec) {
			logger(c).Warnf("container %s: its sandbox %s is unresponsive (its VMM is stopped); state says %s, delete --force %s removes it",
				id, rec.SandboxID, rec.CurrentStatus(), id)
		}
		data, err := json.MarshalIndent(stateOf(rec), "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(os.Stdout, string(data))
		return err
	},
}

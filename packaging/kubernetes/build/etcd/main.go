// Command etcd is etcd's server (what etcd's own main runs), built beside
// kube-apiserver from the same module graph for integration/kubelet.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

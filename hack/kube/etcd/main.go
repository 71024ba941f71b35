// Command etcd is etcd's own server main, built from go.etcd.io/etcd/server/v3
// so the real-cluster tests need no prebuilt download (see ../README.md).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

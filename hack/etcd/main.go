// Command etcd is the etcd 3.6 server, built from the Go module proxy so the test harness and
// `make dev` need no prebuilt binary download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }

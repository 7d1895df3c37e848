// The etcd server the tests' real control plane stores its objects in: etcd's own entry point, built from the
// go.etcd.io/etcd/server/v3 module (the etcd/v3 root module that holds etcd's main is not published).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

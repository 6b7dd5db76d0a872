// Command weir is the Weir command line and node daemon: see package cli.
package main

import (
	"os"

	"github.com/weir-streaming/weir/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}

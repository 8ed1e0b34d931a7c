// Command convoy is the single binary of Convoy: the hub, the agent and the CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/convoy-dev/convoy/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

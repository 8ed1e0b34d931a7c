package cli

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/convoy-dev/convoy/internal/provider/local"
)

// newLocalRuntimeCmd is the process that runs one local cluster. The hub starts it; people do not.
func newLocalRuntimeCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "local-runtime --dir DIR",
		Short:  "Run one local cluster's control plane (started by the hub)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reload := make(chan struct{}, 1)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					select {
					case reload <- struct{}{}:
					default:
					}
				}
			}()
			return local.RunRuntime(cmd.Context(), dir, reload, g.log)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the cluster's directory")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/convoy-dev/convoy/internal/version"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Convoy's version and the upstream versions it is pinned to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := g.streams.Out
			fmt.Fprintf(out, "convoy      %s (%s, %s/%s)\n", version.Convoy, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			fmt.Fprintf(out, "kubernetes  %s\n", version.Kubernetes)
			fmt.Fprintf(out, "kine        %s\n", version.Kine)
			fmt.Fprintf(out, "kwok        %s\n", version.Kwok)
			return nil
		},
	}
}

package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/convoy-dev/convoy/internal/agent"
	"github.com/convoy-dev/convoy/internal/version"
)

func newAgentCmd(g *globals) *cobra.Command {
	var o agent.Options
	var caFile, memberKubeconfig, token string
	cmd := &cobra.Command{
		Use:   "agent --cluster NAME --hub-url URL --hub-ca-file FILE --state-dir DIR",
		Short: "Run a member cluster's agent: join the hub, heartbeat, report, apply Works",
		Long: `Run the agent of one member cluster. It connects out to the hub only. The first time it
needs a bootstrap token (from ` + "`convoy cluster join`" + `), which it trades for its own identity and keeps
in --state-dir. Without --kubeconfig it uses the in-cluster configuration (as a Deployment).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("read --hub-ca-file: %w", err)
			}
			o.HubCA = ca
			if token != "" {
				// A token given on the command line goes to a file, which is where the agent
				// reads bootstrap tokens from.
				dir := o.StateDir
				if dir == "" {
					dir = os.TempDir()
				}
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return err
				}
				o.BootstrapTokenFile = filepath.Join(dir, "bootstrap-token")
				if err := os.WriteFile(o.BootstrapTokenFile, []byte(token), 0o600); err != nil {
					return err
				}
			}
			var memberCfg *rest.Config
			if memberKubeconfig != "" {
				memberCfg, err = clientcmd.BuildConfigFromFlags("", memberKubeconfig)
			} else {
				memberCfg, err = rest.InClusterConfig()
			}
			if err != nil {
				return fmt.Errorf("member cluster: %w (pass --kubeconfig when not running inside the cluster)", err)
			}
			if o.Member, err = agent.NewKubeMember(memberCfg); err != nil {
				return err
			}
			o.Version, o.Log = version.Convoy, g.log
			if os.Getenv("GOGC") == "" {
				// The agent's heap is small and its allocation rate low: collecting at a quarter
				// growth keeps it small at a cost of little CPU. GOGC still overrides.
				debug.SetGCPercent(25)
			}
			// Listing everything at start-up is the agent's biggest heap; once the first Works
			// are applied, hand what that peak left behind back to the system.
			release := time.AfterFunc(20*time.Second, debug.FreeOSMemory)
			defer release.Stop()
			return agent.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Cluster, "cluster", "", "name of this cluster on the hub")
	f.StringVar(&o.HubURL, "hub-url", "", "URL of the hub's API server")
	f.StringVar(&caFile, "hub-ca-file", "", "the hub's CA certificate (PEM)")
	f.StringVar(&o.BootstrapTokenFile, "bootstrap-token-file", "", "file with a bootstrap token from `convoy cluster join`")
	f.StringVar(&token, "bootstrap-token", "", "a bootstrap token from `convoy cluster join` (stored in --state-dir)")
	f.StringVar(&o.StateDir, "state-dir", "", "directory where the agent keeps its identity")
	f.StringVar(&o.StateSecret, "state-secret", "", "NAMESPACE/NAME of a member Secret to keep the identity in (instead of --state-dir)")
	f.StringVar(&memberKubeconfig, "kubeconfig", "", "kubeconfig of the member cluster (default: in-cluster)")
	for _, name := range []string{"cluster", "hub-url", "hub-ca-file"} {
		_ = cmd.MarkFlagRequired(name)
	}
	cmd.MarkFlagsOneRequired("state-dir", "state-secret")
	return cmd
}

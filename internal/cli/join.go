package cli

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/join"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/registry"
)

func newClusterJoinCmd(g *globals) *cobra.Command {
	var ttl time.Duration
	var metrics bool
	var mode, image, hubURL, deliveryPort string
	cmd := &cobra.Command{
		Use:   "join NAME",
		Short: "Issue a short-lived bootstrap token for a cluster's agent, and print how to run the agent",
		Long: `Issue a bootstrap token that lets the cluster's agent get its own identity on the hub, and
print how to run the agent:

  --mode deployment (the default for imported clusters): a manifest to apply to the member,
                    which runs the agent there as a Deployment;
  --mode process:   the command that runs the agent as a process next to the member.

The hub runs the agents of local clusters by itself; for them, join hands the new token to
that agent (which uses it when it has no working identity, for example after a revoke).`,
		Example: `  convoy cluster join eks-prod | kubectl --kubeconfig eks.yaml apply -f -
  convoy cluster join eks-prod --mode process --ttl 5m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			cfg, err := g.restConfig()
			if err != nil {
				return err
			}
			c, err := getCluster(ctx, hc, args[0])
			if err != nil {
				return err
			}
			if mode == "" {
				mode = "deployment"
				if c.Spec.Provider == v1alpha1.ProviderLocal {
					mode = "local"
				}
			}
			if mode != "deployment" && mode != "process" && mode != "local" {
				return usageError("--mode %q: use deployment or process", mode)
			}
			if ttl < time.Minute || ttl > 24*time.Hour {
				return usageError("--ttl %s: use between 1m and 24h", ttl)
			}
			if !cmd.Flags().Changed("delivery-port") {
				// The port the hub gives its agents in their settings; an agent that cannot
				// reach it joins through the API server instead.
				var settings corev1.ConfigMap
				key := client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(c.Name), Name: v1alpha1.AgentConfigMap}
				if err := hc.Get(ctx, key, &settings); err == nil {
					deliveryPort = settings.Data[v1alpha1.AgentConfigDeliveryPort]
				}
			}
			if deliveryPort != "" {
				if p, err := strconv.Atoi(deliveryPort); err != nil || p < 1 || p > 65535 {
					return usageError("--delivery-port %q: use a port number (1 to 65535), or \"\" to join through the API server", deliveryPort)
				}
			}
			token, err := join.Issue(ctx, hc, c.Name, ttl)
			if err != nil {
				return hubError("the hub", err)
			}
			if hubURL == "" {
				hubURL = cfg.Host
				if u, err := url.Parse(cfg.Host); err == nil && u.Hostname() == "127.0.0.1" && mode == "deployment" {
					// A pod reaches the hub on this machine at the fleet gateway, as real
					// nodes of local clusters do.
					hubURL = "https://" + net.JoinHostPort(kubeproc.FleetGateway, u.Port())
				}
			}
			ca := cfg.CAData
			if len(ca) == 0 && cfg.CAFile != "" {
				if ca, err = os.ReadFile(cfg.CAFile); err != nil {
					return err
				}
			}
			out, errOut := g.streams.Out, g.streams.ErrOut
			fmt.Fprintf(errOut, "Bootstrap token for cluster %q, valid until %s (%s):\n  %s\n", c.Name, token.Expires.Format(time.RFC3339), ttl, token.Value)
			switch mode {
			case "local":
				fmt.Fprintf(errOut, "The hub runs the agent of local cluster %q itself and hands it this token.\n", c.Name)
			case "process":
				fmt.Fprintf(out, "cat > hub-ca.crt <<'EOF'\n%sEOF\n", ca)
				port := ""
				if deliveryPort != "" {
					port = " --delivery-port " + deliveryPort
				}
				fmt.Fprintf(out, "convoy agent --cluster %s --hub-url %s%s --hub-ca-file hub-ca.crt --bootstrap-token %s --state-dir ./convoy-agent-%s --kubeconfig MEMBER_KUBECONFIG\n",
					c.Name, hubURL, port, token.Value, c.Name)
			case "deployment":
				if !cmd.Flags().Changed("metrics") {
					// The hub serves its metrics API while it runs its store.
					if dc, err := discovery.NewDiscoveryClientForConfig(cfg); err == nil {
						_, err := dc.ServerResourcesForGroupVersion(v1alpha1.MetricsGroup + "/" + v1alpha1.MetricsVersion)
						metrics = err == nil
					}
				}
				// The log collector, while the hub serves its log API (it runs its log store).
				logs := false
				if dc, err := discovery.NewDiscoveryClientForConfig(cfg); err == nil {
					_, err := dc.ServerResourcesForGroupVersion(v1alpha1.LogsGroup + "/" + v1alpha1.LogsVersion)
					logs = err == nil
				}
				m, err := join.AgentManifest(c.Name, hubURL, deliveryPort, ca, token.Value, image, metrics, logs)
				if err != nil {
					return err
				}
				fmt.Fprintf(errOut, "Apply the manifest below to the member, for example: convoy cluster join %s | kubectl --kubeconfig MEMBER apply -f -\n", c.Name)
				fmt.Fprint(out, m)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&ttl, "ttl", join.DefaultTTL, "how long the token is valid (1m to 24h)")
	f.StringVar(&mode, "mode", "", "how to run the agent: deployment or process (default: deployment; local clusters: the hub runs it)")
	f.BoolVar(&metrics, "metrics", false, "for --mode deployment: run the metrics collector beside the agent, sending to the hub's fleet store (default: whether the hub runs its store)")
	f.StringVar(&image, "image", registry.ConvoyImage(), "container image of convoy, for --mode deployment (the hub pushes this one to the fleet registry)")
	f.StringVar(&deliveryPort, "delivery-port", "", "port of the hub's delivery stream on --hub-url's host, where the agent joins without a request to the hub's API server (default: the one the hub gives its agents; \"\": join through the API server)")
	f.StringVar(&hubURL, "hub-url", "", "the hub's URL as the member sees it (default: the one in your hub kubeconfig; for a deployment, a hub on 127.0.0.1 is https://10.77.0.1:PORT, as pods on real nodes reach it)")
	return cmd
}

func newClusterRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Lock a cluster's agent out of the hub; `convoy cluster join` lets it back in",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			c, err := getCluster(ctx, hc, args[0])
			if err != nil {
				return err
			}
			if err := join.Revoke(ctx, hc, c.Name); err != nil {
				return hubError("the hub", err)
			}
			fmt.Fprintf(g.streams.Out, "The agent of cluster %q is locked out: its tokens no longer work. Nothing on the member changes. `convoy cluster join %s` lets it back in.\n", c.Name, c.Name)
			return nil
		},
	}
}

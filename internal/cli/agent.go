package cli

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/agent"
	"github.com/convoy-dev/convoy/internal/observe"
	"github.com/convoy-dev/convoy/internal/sim"
	"github.com/convoy-dev/convoy/internal/version"
)

func newAgentCmd(g *globals) *cobra.Command {
	var o agent.Options
	var caFile, memberKubeconfig, token, collectorBin, collectorPods, logImage, logHubURL, logDataDir string
	var logHostPaths []string
	var s simOptions
	cmd := &cobra.Command{
		Use:   "agent --cluster NAME --hub-url URL --hub-ca-file FILE --state-dir DIR | agent --simulate N --state-dir DIR",
		Short: "Run a member cluster's agent: join the hub, heartbeat, report, apply Works",
		Long: `Run the agent of one member cluster. It connects out to the hub only. The first time it
needs a bootstrap token (from ` + "`convoy cluster join`" + `), which it trades for its own identity and keeps
in --state-dir. Without --kubeconfig it uses the in-cluster configuration (as a Deployment).

With --simulate N it registers N clusters on the hub (imported, known only through their agents)
and runs their agents in this process against simulated, in-memory members, until interrupted: a
fleet to try Placements and rollouts on, or to load a hub with. It finds the hub like the other
commands (--hub-kubeconfig, $CONVOY_KUBECONFIG, the default data dir).`,
		Example: `  convoy agent --simulate 50 --state-dir /tmp/sim --labels fleet=demo`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if s.clusters > 0 {
				s.stateDir, s.deliveryAddr, s.deliveryPort = o.StateDir, o.DeliveryAddr, o.DeliveryPort
				return runSimulated(cmd.Context(), g, s)
			}
			if s.clusters < 0 {
				return usageError("--simulate takes a number of clusters, 1 or more")
			}
			for flag, v := range map[string]string{"cluster": o.Cluster, "hub-url": o.HubURL, "hub-ca-file": caFile} {
				if v == "" {
					return usageError("--%s is required (or run simulated clusters with --simulate N)", flag)
				}
			}
			if o.StateDir == "" && o.StateSecret == "" {
				return usageError("--state-dir or --state-secret is required: the agent keeps its identity there")
			}
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
			pods, err := parsePodReach(collectorPods, memberKubeconfig == "")
			if err != nil {
				return err
			}
			if collectorBin != "" {
				if o.StateDir == "" {
					return usageError("--collector-bin needs --state-dir: the collector keeps its configuration and buffer there")
				}
				// The agent's work does not wait for its metrics: without the binary it runs
				// without a collector.
				if _, err := os.Stat(collectorBin); err != nil {
					g.log.Error("no metrics collector (make builds bin/vmagent)", "err", err)
				} else {
					o.Collector = &agent.Collector{Binary: collectorBin, Member: memberCfg, Dir: filepath.Join(o.StateDir, "collector"), Pods: pods}
				}
			}
			if logImage != "" {
				o.LogCollector = &agent.LogCollector{Image: logImage, HubURL: logHubURL, HostPaths: logHostPaths, DataHostPath: logDataDir}
			} else if logHubURL != "" || len(logHostPaths) > 0 {
				return usageError("--log-collector-hub-url and --log-collector-host-path need --log-collector-image")
			}
			o.Version, o.Log = version.Convoy, g.log
			routeTunnelLogs(g.log)
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
	f.StringVar(&o.DeliveryAddr, "delivery-addr", "", "HOST:PORT of the hub's delivery stream, when the agent reaches it elsewhere than at --hub-url's host and the port the hub names (a proxy or port mapping)")
	f.StringVar(&o.DeliveryPort, "delivery-port", "", "port of the hub's delivery stream on --hub-url's host: the agent joins the hub there, with no request to the hub's API server (without it or --delivery-addr, the agent joins through the API server and learns the port from the hub)")
	f.StringVar(&o.BootstrapTokenFile, "bootstrap-token-file", "", "file with a bootstrap token from `convoy cluster join`")
	f.StringVar(&token, "bootstrap-token", "", "a bootstrap token from `convoy cluster join` (stored in --state-dir)")
	f.StringVar(&o.StateDir, "state-dir", "", "directory where the agent keeps its identity")
	f.StringVar(&o.StateSecret, "state-secret", "", "NAMESPACE/NAME of a member Secret to keep the identity in (instead of --state-dir)")
	f.StringVar(&memberKubeconfig, "kubeconfig", "", "kubeconfig of the member cluster (default: in-cluster)")
	f.StringVar(&logImage, "log-collector-image", "", "Convoy's image as the member's nodes pull it: the agent runs the log collector (convoy log-collector, from that image) as a DaemonSet on the member's real nodes, which sends their pods' logs to the hub's log store (without it, none are sent)")
	f.StringVar(&logHubURL, "log-collector-hub-url", "", "the hub's API server as the member's pods reach it (default: --hub-url)")
	f.StringArrayVar(&logHostPaths, "log-collector-host-path", nil, "a host directory where the member's kubelets keep pod logs, when not /var/log/pods: the log collectors read it at the same path (repeatable)")
	f.StringVar(&logDataDir, "log-collector-data-host-path", observe.DefaultLogDataHostPath, "the host directory under which each node's log collector keeps its buffer and read positions (a directory per node)")
	f.StringVar(&collectorBin, "collector-bin", "", "vmagent's executable: the agent runs it to send the member's metrics to the hub's fleet store (without it, none are sent)")
	f.StringVar(&collectorPods, "collector-pods", "", "which pods that ask to be scraped (prometheus.io/scrape) the collector reaches at their addresses: all (it runs in the cluster's network), none, or a CIDR (the cluster's pod network, which this host routes); default all inside the cluster, none with --kubeconfig")
	f.IntVar(&s.clusters, "simulate", 0, "run N simulated clusters' agents in this process instead of one real agent")
	f.StringVar(&s.prefix, "name-prefix", "sim", "with --simulate: the clusters are named PREFIX-0000, PREFIX-0001, ...")
	f.StringToStringVar(&s.labels, "labels", nil, "with --simulate: labels of the simulated Clusters, for Placements to select")
	f.DurationVar(&s.availableAfter, "available-after", 100*time.Millisecond, "with --simulate: how long a simulated workload takes to become available")
	return cmd
}

type simOptions struct {
	clusters       int
	prefix         string
	labels         map[string]string
	availableAfter time.Duration
	stateDir       string
	deliveryAddr   string
	deliveryPort   string
}

// runSimulated registers simulated clusters and runs their agents until ctx ends.
func runSimulated(ctx context.Context, g *globals, s simOptions) error {
	if s.stateDir == "" {
		return usageError("--state-dir is required: the simulated agents keep their identities there, so a second run reuses them")
	}
	if err := checkName(s.prefix + "-0000"); err != nil {
		return usageError("--name-prefix %q: %v", s.prefix, err)
	}
	cfg, err := g.restConfig()
	if err != nil {
		return err
	}
	ca := cfg.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			return fmt.Errorf("read the hub's CA: %w", err)
		}
	}
	hc, err := g.hubClient()
	if err != nil {
		return err
	}
	fleet := sim.NewFleet(sim.Options{HubURL: cfg.Host, HubCA: ca, DeliveryAddr: s.deliveryAddr, DeliveryPort: s.deliveryPort,
		StateDir: s.stateDir, AvailableAfter: s.availableAfter, Version: version.Convoy, Log: g.log})
	defer fleet.StopAll()
	out := g.streams.Out
	start := time.Now()
	names := make([]string, s.clusters)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%04d", s.prefix, i)
		token, err := sim.Register(ctx, hc, names[i], s.labels, 15*time.Minute)
		if err != nil {
			return hubError(cfg.Host, err)
		}
		if _, err := fleet.Start(ctx, names[i], token); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "%d simulated clusters registered (%s-0000 to %s); their agents run until interrupted\n", s.clusters, s.prefix, names[len(names)-1])
	reported := 0
	for ctx.Err() == nil {
		ready := 0
		for _, n := range names {
			c := &v1alpha1.Cluster{}
			if err := hc.Get(ctx, client.ObjectKey{Name: n}, c); err == nil && c.Status.Phase == v1alpha1.ClusterReady {
				ready++
			}
		}
		if ready != reported {
			fmt.Fprintf(out, "%d of %d simulated clusters Ready after %.1fs\n", ready, s.clusters, time.Since(start).Seconds())
			reported = ready
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	fmt.Fprintf(out, "stopping %d simulated agents; the Clusters stay on the hub (convoy cluster delete removes them)\n", s.clusters)
	return nil
}

// parsePodReach reads --collector-pods. Its default is every pod for an agent inside its
// cluster, and none for one outside (with --kubeconfig), whose scrapes of pod addresses would
// go wherever its host routes them.
func parsePodReach(s string, inCluster bool) (observe.PodReach, error) {
	switch s {
	case "":
		return observe.PodReach{None: !inCluster}, nil
	case "all":
		return observe.PodReach{}, nil
	case "none":
		return observe.PodReach{None: true}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return observe.PodReach{}, usageError("--collector-pods %q: want all, none or an IPv4 CIDR such as 10.64.0.0/18", s)
	}
	return observe.PodReach{Network: p.Masked()}, nil
}

package cli

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
)

func newHubCmd(g *globals) *cobra.Command {
	opts := hub.Options{}
	var oidc kubeproc.JWTIssuer
	var oidcCA string
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the hub: the fleet's API server, datastore and controllers",
		Long: `Run the hub in the foreground until SIGINT or SIGTERM.

The hub runs an upstream kube-apiserver on kine (SQLite in the data dir by default) and
Convoy's controllers. It writes an admin kubeconfig to DATA-DIR/kubeconfig, which convoy,
kubectl and helm use.`,
		Example: `  convoy hub
  convoy hub --data-dir /var/lib/convoy --datastore-endpoint 'postgres://convoy:secret@db:5432/convoy'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.MetricsRetention >= 0 && opts.MetricsRetention < 24*time.Hour {
				return usageError("--metrics-retention %s: use 24h or more (the store keeps whole days), or -1s to turn the store off", opts.MetricsRetention)
			}
			if opts.LogsRetention >= 0 && opts.LogsRetention < 24*time.Hour {
				return usageError("--logs-retention %s: use 24h or more (the store keeps whole days), or -1s to turn the store off", opts.LogsRetention)
			}
			if oidc.URL != "" {
				if oidcCA != "" {
					ca, err := os.ReadFile(oidcCA)
					if err != nil {
						return usageError("--oidc-ca-file: %v", err)
					}
					oidc.CAPEM = ca
				}
				if _, err := kubeproc.AuthenticationConfig([]kubeproc.JWTIssuer{oidc}); err != nil {
					return usageError("%v", err)
				}
				if opts.NoIssuer {
					return usageError("--no-issuer goes without --oidc-issuer: the hub runs no issuer of its own when it trusts another")
				}
				opts.OIDCIssuers = []kubeproc.JWTIssuer{oidc}
			} else {
				for _, f := range []string{"oidc-ca-file", "oidc-client-id", "oidc-username-claim", "oidc-groups-claim"} {
					if cmd.Flags().Changed(f) {
						return usageError("--%s goes with --oidc-issuer", f)
					}
				}
			}
			opts.Log = g.log
			return hub.Run(cmd.Context(), opts, g.streams.Out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", hub.DefaultDataDir(), "directory for the hub's datastore, PKI, logs and kubeconfig ($CONVOY_DATA_DIR)")
	f.StringVar(&opts.BinDir, "bin-dir", kubeproc.DefaultBinDir(), "directory with kube-apiserver, kube-controller-manager and kine ($CONVOY_BIN_DIR)")
	f.StringVar(&opts.DatastoreEndpoint, "datastore-endpoint", "", "datastore: empty for SQLite in the data dir, or postgres://, mysql://, nats://, sqlite://, or etcd URLs (http(s)://HOST:2379,...)")
	f.StringVar(&opts.DatastoreTLS.CAFile, "datastore-cafile", "", "CA certificate to verify the datastore")
	f.StringVar(&opts.DatastoreTLS.CertFile, "datastore-certfile", "", "client certificate for the datastore")
	f.StringVar(&opts.DatastoreTLS.KeyFile, "datastore-keyfile", "", "client key for the datastore")
	f.IntVar(&opts.APIServerPort, "apiserver-port", 0, "port of the hub's API server on 127.0.0.1 (default: the port used last time, else 6443 if free)")
	f.IntVar(&opts.RegistryPort, "registry-port", 0, "port of the fleet registry on 127.0.0.1 (default: the port used last time, else 5000 if free)")
	f.IntVar(&opts.DeliveryPort, "delivery-port", 0, "port of the agents' delivery stream (heartbeats and status) on 127.0.0.1 (default: the port used last time, else the API server's + 1 if free); -1 turns it off, and agents renew Leases and write status themselves")
	f.StringVar(&opts.HealthAddr, "health-addr", "127.0.0.1:9440", "address for /healthz and /readyz; empty turns them off")
	f.StringVar(&opts.PprofAddr, "pprof-addr", "", "address where the hub process serves Go's /debug/pprof, for profiling (for example 127.0.0.1:6060), and turns on its API server's /debug/pprof; empty turns both off")
	f.DurationVar(&opts.HeartbeatInterval, "heartbeat-interval", 0, "how often agents heartbeat (default 2s): on the delivery stream, or by renewing their Lease while the fleet is within --max-heartbeat-rate")
	f.Float64Var(&opts.MaxHeartbeatRate, "max-heartbeat-rate", 0, "heartbeats a second the whole fleet may send (default 50); a larger fleet heartbeats less often, and its clusters become Unreachable after 3 intervals")
	f.DurationVar(&opts.UnreachableAfter, "unreachable-after", 0, "how long without a heartbeat makes a cluster Unreachable (default 6s)")
	f.Var(prefixFlag{&opts.EdgeAddresses}, "edge-addresses", "range (CIDR) the edge pools' addresses come from (default "+hub.DefaultEdgeAddresses.String()+")")
	f.DurationVar(&opts.LogsRetention, "logs-retention", observe.DefaultLogsRetention, "how long the fleet log store keeps pods' log lines, in whole days (24h steps); -1s turns the store, its API and the members' log collectors off")
	f.DurationVar(&opts.MetricsRetention, "metrics-retention", observe.DefaultRetention, "how long the fleet metrics store keeps samples, in whole days (24h steps); -1s turns the store and its query API off")
	f.IntVar(&opts.EdgeInstances, "edge-instances", 0, "HAProxy instances the hub runs per edge pool (default 1); -1 runs none, for edge hosts to serve them (convoy edge)")
	f.StringVar(&oidc.URL, "oidc-issuer", "", "an OpenID Connect issuer (https://) whose ID tokens the hub's and every local cluster's API server accept instead of the hub's own issuer's: people log in with it, as "+kubeproc.DefaultOIDCPrefix+"USER in groups "+kubeproc.DefaultOIDCPrefix+"GROUP, and RBAC decides what they may do")
	f.BoolVar(&opts.NoIssuer, "no-issuer", false, "run no OpenID Connect issuer of the hub's own (by default it does, for its Users: convoy user add, convoy login)")
	f.StringVar(&oidcCA, "oidc-ca-file", "", "the CA (PEM) of the --oidc-issuer's serving certificate, when the host's roots do not trust it")
	f.StringSliceVar(&oidc.Audiences, "oidc-client-id", []string{"convoy"}, "the client IDs the --oidc-issuer's tokens must be for (their aud)")
	f.StringVar(&oidc.UsernameClaim, "oidc-username-claim", "email", "the claim of the --oidc-issuer's tokens that names the person (an email must be verified)")
	f.StringVar(&oidc.GroupsClaim, "oidc-groups-claim", "groups", "the claim of the --oidc-issuer's tokens that lists the person's groups")
	cmd.MarkFlagsRequiredTogether("datastore-certfile", "datastore-keyfile")
	return cmd
}

// prefixFlag is a CIDR flag.
type prefixFlag struct{ p *netip.Prefix }

func (f prefixFlag) String() string {
	if f.p == nil || !f.p.IsValid() {
		return ""
	}
	return f.p.String()
}

func (f prefixFlag) Set(v string) error {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return fmt.Errorf("%q is not a CIDR range such as 127.77.0.0/16", v)
	}
	*f.p = p
	return nil
}

func (prefixFlag) Type() string { return "cidr" }

package cli

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/edgehost"
	"github.com/convoy-dev/convoy/internal/hub"
)

func newEdgeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "The edge load balancer: its pools, one per Gateway of class convoy-edge",
	}
	cmd.AddCommand(newEdgeStatusCmd(g), newEdgeRunCmd(g), newEdgeKubeconfigCmd(g))
	return cmd
}

func newEdgeRunCmd(g *globals) *cobra.Command {
	o := edgehost.Options{}
	cmd := &cobra.Command{
		Use:   "run --name NAME",
		Short: "Run this host's HAProxy instances of every edge pool, until SIGINT or SIGTERM",
		Long: `Run an edge host: watch the hub's edge pools and run HAProxy instances of each here,
binding each pool's address and ports together with the hub's own instances and other edge
hosts' (SO_REUSEPORT). The hub may be away: the instances keep serving what they served.
Give it a kubeconfig made by ` + "`convoy edge kubeconfig NAME`" + `, which may read the edge pools
and report on them, and nothing else. The hub runs no instances of its own with
` + "`convoy hub --edge-instances -1`" + `.`,
		Example: `  convoy edge kubeconfig edge-1 > edge-1.kubeconfig
  convoy edge run --name edge-1 --kubeconfig edge-1.kubeconfig --instances 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.restConfig()
			if err != nil {
				return err
			}
			if errs := validation.IsDNS1123Label(o.Name); len(errs) > 0 || o.Name == v1alpha1.EdgeSupervisorHub {
				return usageError("--name %q is not an edge host name: use a DNS label other than \"hub\", for example edge-1", o.Name)
			}
			if o.Instances < 1 {
				return usageError("--instances %d: an edge host runs at least one instance of each pool", o.Instances)
			}
			if o.Dir == "" {
				o.Dir = filepath.Join(hub.DefaultDataDir()+"-edge", o.Name)
			}
			o.Hub, o.Log = cfg, g.log
			return edgehost.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "this host's name in the pools' status (required)")
	f.StringVar(&o.Dir, "dir", "", "where the instances keep their files (default ~/.convoy-edge/NAME)")
	f.IntVar(&o.Instances, "instances", 1, "HAProxy instances per pool on this host")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newEdgeKubeconfigCmd(g *globals) *cobra.Command {
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "kubeconfig NAME",
		Short: "Make an edge host's identity at the hub and print its kubeconfig",
		Long: `Make the hub identity of the edge host NAME (a ServiceAccount that may read the edge pools
and report on them, in namespace convoy-system, and nothing else) and print a kubeconfig with a
token for it. Deleting the ServiceAccount revokes it:
  kubectl -n convoy-system delete serviceaccount edge-NAME`,
		Example: `  convoy edge kubeconfig edge-1 > edge-1.kubeconfig`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if errs := validation.IsDNS1123Label(name); len(errs) > 0 || name == v1alpha1.EdgeSupervisorHub {
				return usageError("%q is not an edge host name: use a DNS label other than \"hub\", for example edge-1", name)
			}
			cfg, err := g.restConfig()
			if err != nil {
				return err
			}
			c, err := g.hubClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			for _, o := range edgehost.Access(name) {
				if err := c.Patch(ctx, o, client.Apply, client.FieldOwner("convoy-edge"), client.ForceOwnership); err != nil {
					return hubError(cfg.Host, err)
				}
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			tr, err := cs.CoreV1().ServiceAccounts(v1alpha1.SystemNamespace).CreateToken(ctx, edgehost.ServiceAccountName(name),
				&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(duration.Seconds()))}}, metav1.CreateOptions{})
			if err != nil {
				return hubError(cfg.Host, err)
			}
			kc := clientcmdapi.NewConfig()
			ca := cfg.CAData
			if len(ca) == 0 && cfg.CAFile != "" {
				if ca, err = os.ReadFile(cfg.CAFile); err != nil {
					return err
				}
			}
			kc.Clusters["convoy"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: ca}
			kc.AuthInfos["edge-"+name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
			kc.Contexts["edge-"+name] = &clientcmdapi.Context{Cluster: "convoy", AuthInfo: "edge-" + name}
			kc.CurrentContext = "edge-" + name
			raw, err := clientcmd.Write(*kc)
			if err != nil {
				return err
			}
			_, err = g.streams.Out.Write(raw)
			if err == nil {
				fmt.Fprintf(g.streams.ErrOut, "edge host %s: token valid until %s\n", name, tr.Status.ExpirationTimestamp.Format(time.RFC3339))
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", edgehost.TokenDuration, "how long the token lasts")
	return cmd
}

func newEdgeStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [NAMESPACE/GATEWAY]",
		Short: "Show the edge pools: address, listeners, routes, and backends per cluster with their health",
		Long: `Show each edge pool (or one): the address and URL to reach it, whether it is programmed,
its HAProxy instances, and for each route the servers per cluster, how many of them HAProxy
finds up (from the instances' own metrics), and the requests they answered.`,
		Example: `  convoy edge status
  convoy edge status demo/edge`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.hubClient()
			if err != nil {
				return err
			}
			var pools []v1alpha1.EdgePool
			if len(args) == 1 {
				ns, name, ok := strings.Cut(args[0], "/")
				if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
					return usageError("%q: name the Gateway as NAMESPACE/NAME, for example demo/edge", args[0])
				}
				var p v1alpha1.EdgePool
				if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.EdgePoolName(ns, name)}, &p); err != nil {
					if apierrors.IsNotFound(err) {
						return fmt.Errorf("no edge pool for Gateway %s/%s: is it of class %s, and accepted? See `kubectl -n %s describe gateway %s`", ns, name, v1alpha1.EdgeGatewayClass, ns, name)
					}
					return hubError("the hub", err)
				}
				pools = append(pools, p)
			} else {
				var list v1alpha1.EdgePoolList
				if err := c.List(cmd.Context(), &list, client.InNamespace(v1alpha1.SystemNamespace)); err != nil {
					return hubError("the hub", err)
				}
				pools = list.Items
				if len(pools) == 0 {
					fmt.Fprintf(g.streams.Out, "No edge pools. A Gateway of class %s makes one: see examples/web/gateway.yaml\n", v1alpha1.EdgeGatewayClass)
					return nil
				}
			}
			for i, p := range pools {
				if i > 0 {
					fmt.Fprintln(g.streams.Out)
				}
				printEdgePool(cmd.Context(), c, g.streams.Out, &p)
			}
			return nil
		},
	}
}

// printEdgePool prints one pool, with its servers' health from an instance's metrics.
func printEdgePool(ctx context.Context, c client.Client, out io.Writer, p *v1alpha1.EdgePool) {
	programmed := "Unknown"
	ns, name, _ := strings.Cut(p.Spec.Gateway, "/")
	gw := &gatewayv1.Gateway{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, gw); err == nil {
		if cond := meta.FindStatusCondition(gw.Status.Conditions, string(gatewayv1.GatewayConditionProgrammed)); cond != nil {
			programmed = string(cond.Status)
			if cond.Status != "True" {
				programmed += " (" + cond.Reason + ": " + cond.Message + ")"
			}
		}
	}
	fmt.Fprintf(out, "Pool %s at %s, programmed: %s\n", p.Spec.Gateway, p.Spec.Address, programmed)
	if l := p.Spec.Limits; l.MaxConnections > 0 || l.RequestsPerSecond > 0 {
		fmt.Fprintf(out, "Limits per instance: %s connections, %s requests a second\n", orNone(l.MaxConnections), orNone(l.RequestsPerSecond))
	}
	var health map[string]serverHealth
	var metricsErr error = fmt.Errorf("no instance serves the pool")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  INSTANCE\tPHASE\tGENERATION\tRELOADS\tRUNTIME CHANGES\tMETRICS")
	// The hub's instances first: their metrics are on this host when convoy runs beside the
	// hub; an edge host's are on that host.
	instances := slices.Clone(p.Status.Instances)
	slices.SortStableFunc(instances, func(a, b v1alpha1.EdgeInstance) int {
		return cmp.Compare(boolInt(a.Supervisor != v1alpha1.EdgeSupervisorHub), boolInt(b.Supervisor != v1alpha1.EdgeSupervisorHub))
	})
	for _, in := range instances {
		phase := string(in.Phase)
		if in.Message != "" {
			phase += ": " + in.Message
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d/%d\t%d\t%d\t%s\n", in.Name, phase, in.ObservedGeneration, p.Generation, in.Reloads, in.RuntimeChanges, in.Metrics)
		if health == nil && in.Phase == v1alpha1.EdgeServing && in.Metrics != "" {
			health, metricsErr = scrapeHealth(ctx, in.Metrics)
		}
	}
	tw.Flush()
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  LISTENER\tPORT\tPROTOCOL\tREACH IT AT")
	for _, l := range p.Spec.Listeners {
		addr := net.JoinHostPort(p.Spec.Address, strconv.Itoa(int(l.Port)))
		if l.Protocol == "HTTP" {
			addr = "http://" + addr + "/"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\n", l.Name, l.Port, l.Protocol, addr)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ROUTE\tMATCH\tCLUSTER\tSERVERS\tUP\tWEIGHT\tRESPONSES")
	for _, l := range p.Spec.Listeners {
		for _, r := range l.Routes {
			match := "*"
			if l.Protocol == "HTTP" {
				hosts := strings.Join(r.Hostnames, ",")
				if hosts == "" {
					hosts = "*"
				}
				match = hosts + " " + r.PathPrefix
			}
			if len(r.Clusters) == 0 {
				fmt.Fprintf(tw, "  %s\t%s\t(none)\t0\t-\t-\t-\n", r.Name, match)
			}
			for _, cs := range r.Clusters {
				weight, servers := 0, strings.Fields(cs.Servers)
				for _, s := range servers { // IP:PORT*WEIGHT
					_, w, _ := strings.Cut(s, "*")
					n, _ := strconv.Atoi(w)
					weight += n
				}
				up, responses := "?", "?"
				if h, ok := health[backendKey(r.Name, cs.Cluster)]; ok {
					up, responses = strconv.Itoa(h.up), strconv.FormatInt(h.responses, 10)
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%d\t%s\n", r.Name, match, cs.Cluster, len(servers), up, weight, responses)
			}
		}
	}
	tw.Flush()
	if metricsErr != nil {
		fmt.Fprintf(out, "  (health unknown: %v)\n", metricsErr)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func orNone(n int32) string {
	if n == 0 {
		return "any"
	}
	return strconv.Itoa(int(n))
}

// serverHealth is what HAProxy's metrics say of one cluster's servers in one backend.
type serverHealth struct {
	up        int
	responses int64
}

// backendKey names a cluster's servers in a route's backend as the metrics do: the backend
// is "be:" and the route's name with '/' made ':', the servers "CLUSTER:SLOT".
func backendKey(route, cluster string) string {
	return "be:" + strings.ReplaceAll(route, "/", ":") + " " + cluster
}

// scrapeHealth reads an instance's Prometheus exporter: the servers that are UP and the
// responses they gave, per backend and cluster.
func scrapeHealth(ctx context.Context, url string) (map[string]serverHealth, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the pool's metrics at %s: %w", url, err)
	}
	defer resp.Body.Close()
	out := map[string]serverHealth{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		var metric string
		switch {
		case strings.HasPrefix(line, "haproxy_server_status{"):
			metric = "status"
		case strings.HasPrefix(line, "haproxy_server_http_responses_total{"):
			metric = "responses"
		default:
			continue
		}
		labels, value := parseSample(line)
		cluster, _, ok := strings.Cut(labels["server"], ":")
		if !ok {
			continue
		}
		key := labels["proxy"] + " " + cluster
		h := out[key]
		switch metric {
		case "status":
			if labels["state"] == "UP" && value == 1 {
				h.up++
			}
		case "responses":
			h.responses += int64(value)
		}
		out[key] = h
	}
	return out, sc.Err()
}

// parseSample splits a Prometheus text sample `name{a="b",...} value` into its labels and value.
func parseSample(line string) (map[string]string, float64) {
	labels := map[string]string{}
	open, end := strings.IndexByte(line, '{'), strings.LastIndexByte(line, '}')
	if open < 0 || end < open {
		return labels, 0
	}
	for _, kv := range strings.Split(line[open+1:end], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			labels[k] = strings.Trim(v, `"`)
		}
	}
	v, _ := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
	return labels, v
}

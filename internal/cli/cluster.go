package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	profilecontroller "github.com/convoy-dev/convoy/internal/controller/profile"
)

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "cluster",
		Aliases: []string{"clusters"},
		Short:   "Create, inspect, scale and delete member clusters",
	}
	cmd.AddCommand(
		newClusterCreateCmd(g),
		newClusterImportCmd(g),
		newClusterListCmd(g),
		newClusterDescribeCmd(g),
		newClusterDiffCmd(g),
		newClusterScaleCmd(g),
		newClusterDeleteCmd(g),
		newClusterKubeconfigCmd(g),
		newClusterJoinCmd(g),
		newClusterRevokeCmd(g),
		newClusterAuthenticationCmd(g),
	)
	return cmd
}

var clusterName = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// checkName refuses a cluster name the API would refuse, with the same advice.
func checkName(name string) error {
	if len(name) > 40 {
		return usageError("cluster name %q is %d characters; use at most 40", name, len(name))
	}
	if !clusterName.MatchString(name) {
		return usageError("cluster name %q is invalid: use lower-case letters, digits and '-', start with a letter and end with a letter or digit (for example us-east-1)", name)
	}
	return nil
}

type createOptions struct {
	provider    string
	nodes       int32
	region      string
	zones       []string
	env         string
	version     string
	cpu, memory string
	pods        int32
	nodeKind    string
	profile     string
	// poolFlags is set when a flag shaped the node pool: with a profile, the pool then
	// takes the place of the profile's template of the same name (default).
	poolFlags bool
	wait      bool
	timeout   time.Duration
}

func newClusterCreateCmd(g *globals) *cobra.Command {
	o := &createOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a cluster and wait until it is Ready",
		Example: `  convoy cluster create us-east --nodes 3 --region us-east --zones a,b,c --env prod
  convoy cluster create dev --nodes 1 --wait=false
  convoy cluster create eu-west --profile prod --region eu-west`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			for _, f := range []string{"nodes", "node-kind", "cpu", "memory", "pods"} {
				o.poolFlags = o.poolFlags || cmd.Flags().Changed(f)
			}
			c, err := o.cluster(name)
			if err != nil {
				return err
			}
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			if err := checkCreatable(ctx, hc, c); err != nil {
				return err
			}
			out := g.streams.Out
			start := time.Now()
			fmt.Fprintf(out, "Creating cluster %q (%s, %d nodes, region %s, environment %s)\n", name, c.Spec.Provider, o.nodes, dash(o.region), dash(o.env))
			if err := hc.Create(ctx, c); err != nil {
				if apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("cluster %q already exists; pick another name, or delete it first with `convoy cluster delete %s`", name, name)
				}
				return hubError("the hub", err)
			}
			if !o.wait {
				fmt.Fprintf(out, "Cluster %q accepted; follow it with `convoy cluster describe %s`.\n", name, name)
				return nil
			}
			res, err := waitClusters(ctx, hc, []string{name}, out, start, o.timeout, isUp)
			if err != nil {
				return err
			}
			printReached(out, res[name])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.provider, "provider", "local", "provider: local (import clusters with `convoy cluster import`)")
	f.Int32Var(&o.nodes, "nodes", 3, "number of nodes (0 to 500)")
	f.StringVar(&o.region, "region", "", "region, for example us-east")
	f.StringSliceVar(&o.zones, "zones", nil, "zones the nodes spread over, for example a,b,c")
	f.StringVar(&o.env, "env", "", "environment, for example prod")
	f.StringVar(&o.version, "version", "", "Kubernetes version (default: the hub's default)")
	f.StringVar(&o.cpu, "cpu", "4", "CPU of each node")
	f.StringVar(&o.memory, "memory", "16Gi", "memory of each node")
	f.Int32Var(&o.pods, "pods", 110, "most pods per node")
	f.StringVar(&o.nodeKind, "node-kind", "simulated", "real (containerd and a kubelet each, at most 10; needs root) or simulated (kwok)")
	f.StringVar(&o.profile, "profile", "", "the ClusterProfile to build the cluster from and hold it to (its version and node pools; --nodes and the other pool flags then replace its pool \"default\")")
	f.BoolVar(&o.wait, "wait", true, "wait until the cluster is Ready, showing progress")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait")
	return cmd
}

// cluster builds the Cluster the flags describe, refusing bad input before anything is sent.
func (o *createOptions) cluster(name string) (*v1alpha1.Cluster, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	switch o.provider {
	case "local":
	case "import":
		return nil, usageError("import a cluster with `convoy cluster import %s --kubeconfig FILE`", name)
	default:
		return nil, usageError("provider %q is unknown; use local (or `convoy cluster import` for an existing cluster)", o.provider)
	}
	if o.nodes < 0 || o.nodes > v1alpha1.MaxNodesPerPool {
		return nil, usageError("--nodes %d is out of range; use 0 to %d", o.nodes, v1alpha1.MaxNodesPerPool)
	}
	if o.version != "" && !regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(o.version) {
		return nil, usageError("--version %q is not a Kubernetes version such as v1.37.2", o.version)
	}
	kind := v1alpha1.NodeSimulated
	switch strings.ToLower(o.nodeKind) {
	case "", "simulated":
	case "real":
		kind = v1alpha1.NodeReal
		if o.nodes > v1alpha1.MaxRealNodesPerPool {
			return nil, usageError("--nodes %d: a pool of real nodes has at most %d; use --node-kind simulated for more", o.nodes, v1alpha1.MaxRealNodesPerPool)
		}
	default:
		return nil, usageError("--node-kind %q: use real or simulated", o.nodeKind)
	}
	cpu, err := resource.ParseQuantity(o.cpu)
	if err != nil {
		return nil, usageError("--cpu %q is not a quantity such as 4 or 500m", o.cpu)
	}
	mem, err := resource.ParseQuantity(o.memory)
	if err != nil {
		return nil, usageError("--memory %q is not a quantity such as 16Gi", o.memory)
	}
	c := &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ClusterSpec{
			Provider:          v1alpha1.ProviderLocal,
			Region:            o.region,
			Zones:             o.zones,
			Environment:       o.env,
			KubernetesVersion: o.version,
			NodePools:         []v1alpha1.NodePool{{Name: "default", Kind: kind, Count: o.nodes, CPU: &cpu, Memory: &mem, Pods: o.pods}},
		},
	}
	if o.profile != "" {
		if o.version != "" {
			return nil, usageError("--version and --profile: a cluster built from a profile runs the profile's version; leave out --version")
		}
		c.Spec.Profile = &v1alpha1.ProfileRef{Name: o.profile}
		if !o.poolFlags {
			c.Spec.NodePools = nil // the profile's templates
		}
	}
	return c, nil
}

// profilePool is the template of the node pool called name in the revision of its profile the
// cluster is held to, or nil.
func profilePool(ctx context.Context, hc client.Client, c *v1alpha1.Cluster, name string) (*v1alpha1.NodePool, error) {
	if c.Status.Profile == nil {
		return nil, fmt.Errorf("cluster %q is not built from its profile %s yet; try again in a moment", c.Name, c.Spec.Profile.Name)
	}
	revs, err := profilecontroller.Revisions(ctx, hc, c.Spec.Profile.Name)
	if err != nil {
		return nil, err
	}
	rev, ok := profilecontroller.Find(revs, c.Status.Profile.Revision)
	if !ok {
		return nil, fmt.Errorf("revision %d of profile %s is not stored any more", c.Status.Profile.Revision, c.Spec.Profile.Name)
	}
	for _, p := range rev.Spec.NodePools {
		if p.Name == name {
			return p.DeepCopy(), nil
		}
	}
	return nil, nil
}

// checkCreatable refuses a cluster that exists already or asks for a version the hub lacks.
func checkCreatable(ctx context.Context, hc client.Client, c *v1alpha1.Cluster) error {
	err := hc.Get(ctx, client.ObjectKey{Name: c.Name}, &v1alpha1.Cluster{})
	if err == nil {
		return fmt.Errorf("cluster %q already exists; pick another name, or delete it first with `convoy cluster delete %s`", c.Name, c.Name)
	}
	if !apierrors.IsNotFound(err) {
		return hubError("the hub", err)
	}
	if ref := c.Spec.Profile; ref != nil {
		if _, err := getProfile(ctx, hc, ref.Name); err != nil {
			return err
		}
	}
	if c.Spec.KubernetesVersion == "" {
		return nil
	}
	cm := &corev1.ConfigMap{}
	if err := hc.Get(ctx, client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.VersionsConfigMap}, cm); err != nil {
		return nil // the API's own check still applies
	}
	avail := strings.Split(cm.Data[v1alpha1.VersionsKey], ",")
	if !slices.Contains(avail, c.Spec.KubernetesVersion) {
		return fmt.Errorf("Kubernetes %s is not available on this hub (available: %s); pick one of those", c.Spec.KubernetesVersion, strings.Join(avail, ", "))
	}
	return nil
}

// inventory is what the cluster's agent last reported (all zero when it has not).
func inventory(c *v1alpha1.Cluster) v1alpha1.Inventory {
	if c.Status.Inventory == nil {
		return v1alpha1.Inventory{}
	}
	return *c.Status.Inventory
}

// memberFacts says what the cluster's agent reports of it, in a few words.
func memberFacts(c *v1alpha1.Cluster) string {
	if c.Status.Inventory == nil {
		return "its agent has not reported yet"
	}
	inv := c.Status.Inventory
	return fmt.Sprintf("Kubernetes %s, %d/%d nodes Ready", inv.KubernetesVersion, inv.Nodes.Ready, inv.Nodes.Total)
}

func printReached(out io.Writer, r waitResult) {
	c := r.cluster
	fmt.Fprintf(out, "Cluster %q is Ready after %.1fs: %s, API server %s\n", c.Name, r.took.Seconds(), memberFacts(c), c.Status.Endpoint)
	fmt.Fprintf(out, `Reach it:
  convoy cluster kubeconfig %[1]s > %[1]s.kubeconfig
  kubectl --kubeconfig %[1]s.kubeconfig get nodes
or merge it into your kubeconfig:
  convoy cluster kubeconfig %[1]s --merge && kubectl --context convoy-%[1]s get nodes
`, c.Name)
}

func newClusterImportCmd(g *globals) *cobra.Command {
	var kubeconfig, region, env string
	var zones []string
	var agentOnly bool
	cmd := &cobra.Command{
		Use:   "import NAME (--kubeconfig FILE | --agent-only)",
		Short: "Register an existing cluster (EKS, GKE, kind, ...) from its kubeconfig; Convoy only observes it",
		Long: `Register an existing cluster from its kubeconfig. Convoy observes it but never changes its
nodes or version. The hub's own kubeconfig then comes from --hub-kubeconfig or $CONVOY_KUBECONFIG.

With --agent-only the hub gets no kubeconfig at all: the cluster is known only through its
agent, which connects out to the hub (convoy cluster join prints how to run it).`,
		Example: `  convoy cluster import prod-eks --kubeconfig ~/.kube/eks.yaml --region us-east --env prod
  convoy cluster import edge-7 --agent-only --region eu-west && convoy cluster join edge-7`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			if agentOnly {
				if kubeconfig != "" {
					return usageError("--agent-only and --kubeconfig exclude each other: the hub either holds the cluster's kubeconfig or knows it only through its agent")
				}
				return importAgentOnly(ctx, g, &v1alpha1.Cluster{
					ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec:       v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderImport, Region: region, Zones: zones, Environment: env},
				})
			}
			if kubeconfig == "" {
				return usageError("--kubeconfig FILE is required: the kubeconfig of the cluster to import (or --agent-only, to know it only through its agent)")
			}
			raw, host, err := memberKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			c := &v1alpha1.Cluster{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: v1alpha1.ClusterSpec{
					Provider: v1alpha1.ProviderImport, Region: region, Zones: zones, Environment: env,
					KubeconfigSecretRef: &v1alpha1.SecretReference{Name: "import-" + name + "-kubeconfig"},
				},
			}
			if err := checkCreatable(ctx, hc, c); err != nil {
				return err
			}
			out := g.streams.Out
			start := time.Now()
			fmt.Fprintf(out, "Importing cluster %q from %s (%s)\n", name, kubeconfig, host)
			// The Secret comes first, so the hub finds it as soon as it sees the Cluster; then
			// it is made owned by the Cluster, so deleting the Cluster removes it.
			secret := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.SystemNamespace, Name: c.Spec.KubeconfigSecretRef.Name},
				Data:       map[string][]byte{v1alpha1.KubeconfigSecretKey: raw},
			}
			if err := hc.Create(ctx, secret); err != nil {
				if apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("secret %s/%s exists already; delete it or pick another cluster name", secret.Namespace, secret.Name)
				}
				return fmt.Errorf("store the kubeconfig: %w", hubError("the hub", err))
			}
			if err := hc.Create(ctx, c); err != nil {
				_ = hc.Delete(context.Background(), secret) // leave nothing half-made
				if apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("cluster %q already exists; pick another name", name)
				}
				return hubError("the hub", err)
			}
			before := secret.DeepCopy()
			if err := controllerutil.SetOwnerReference(c, secret, hc.Scheme()); err != nil {
				return err
			}
			if err := hc.Patch(ctx, secret, client.MergeFrom(before)); err != nil {
				return hubError("the hub", err)
			}
			res, err := waitClusters(ctx, hc, []string{name}, out, start, 2*time.Minute, isProvisioned)
			if err != nil {
				return err
			}
			r := res[name]
			fmt.Fprintf(out, "Cluster %q imported after %.1fs: API server %s answers\n", name, r.took.Seconds(), r.cluster.Status.Endpoint)
			fmt.Fprintf(out, "It takes work once its agent runs; get the agent with:\n  convoy cluster join %s | kubectl --kubeconfig %s apply -f -\n", name, kubeconfig)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to import (its current context is used)")
	f.BoolVar(&agentOnly, "agent-only", false, "register the cluster without a kubeconfig: the hub knows it only through its agent")
	f.StringVar(&region, "region", "", "region of the cluster")
	f.StringSliceVar(&zones, "zones", nil, "zones of the cluster")
	f.StringVar(&env, "env", "", "environment of the cluster")
	return cmd
}

// importAgentOnly registers a cluster that the hub will know only through its agent.
func importAgentOnly(ctx context.Context, g *globals, c *v1alpha1.Cluster) error {
	hc, err := g.hubClient()
	if err != nil {
		return err
	}
	if err := checkCreatable(ctx, hc, c); err != nil {
		return err
	}
	if err := hc.Create(ctx, c); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("cluster %q already exists; pick another name", c.Name)
		}
		return hubError("the hub", err)
	}
	fmt.Fprintf(g.streams.Out, "Cluster %q registered; it becomes Ready when its agent joins. Get the agent with:\n  convoy cluster join %s\n", c.Name, c.Name)
	return nil
}

// memberKubeconfig reads a kubeconfig, keeps only its current context and inlines every file
// it refers to, so that the hub can use it from anywhere.
func memberKubeconfig(path string) ([]byte, string, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read kubeconfig %s: %w", path, err)
	}
	if err := clientcmdapi.MinifyConfig(cfg); err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	raw, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, "", err
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return raw, rc.Host, nil
}

func newClusterListCmd(g *globals) *cobra.Command {
	o := &getOptions{}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List clusters",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sel, err := labels.Parse(o.selector)
			if err != nil {
				return usageError("-l %q is not a label selector: %v", o.selector, err)
			}
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			return getObjects(cmd.Context(), hc, o, "", sel, &v1alpha1.ClusterList{}, &v1alpha1.Cluster{}, g.streams.Out, clusterTable)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table, yaml or json")
	cmd.Flags().StringVarP(&o.selector, "selector", "l", "", "label selector, for example convoy.dev/region=us-east")
	return cmd
}

func newClusterDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a cluster's spec, status, conditions and recent events",
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
			var events corev1.EventList
			_ = hc.List(ctx, &events, client.MatchingFieldsSelector{Selector: fields.SelectorFromSet(fields.Set{
				"involvedObject.kind": "Cluster", "involvedObject.name": c.Name,
			})})
			describeCluster(g.streams.Out, c, events.Items)
			return nil
		},
	}
}

func getCluster(ctx context.Context, hc client.Client, name string) (*v1alpha1.Cluster, error) {
	c := &v1alpha1.Cluster{}
	if err := hc.Get(ctx, client.ObjectKey{Name: name}, c); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("cluster %q not found; `convoy cluster list` shows the clusters", name)
		}
		return nil, hubError("the hub", err)
	}
	return c, nil
}

func describeCluster(w io.Writer, c *v1alpha1.Cluster, events []corev1.Event) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	version := c.Spec.KubernetesVersion
	if version == "" {
		version = "hub default"
	}
	fmt.Fprintf(tw, "Name:\t%s\n", c.Name)
	fmt.Fprintf(tw, "Provider:\t%s\n", c.Spec.Provider)
	fmt.Fprintf(tw, "Region:\t%s\n", dash(c.Spec.Region))
	fmt.Fprintf(tw, "Zones:\t%s\n", dash(strings.Join(c.Spec.Zones, ", ")))
	fmt.Fprintf(tw, "Environment:\t%s\n", dash(c.Spec.Environment))
	inv := inventory(c)
	fmt.Fprintf(tw, "Kubernetes:\t%s (wanted: %s)\n", dash(inv.KubernetesVersion), version)
	fmt.Fprintf(tw, "Phase:\t%s\n", dash(string(c.Status.Phase)))
	fmt.Fprintf(tw, "Endpoint:\t%s\n", dash(c.Status.Endpoint))
	fmt.Fprintf(tw, "Nodes:\t%d/%d Ready\n", inv.Nodes.Ready, inv.Nodes.Total)
	var alloc []string
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
		if q, ok := inv.Allocatable[r]; ok {
			alloc = append(alloc, fmt.Sprintf("%s %s", r, q.String()))
		}
	}
	fmt.Fprintf(tw, "Allocatable:\t%s\n", dash(strings.Join(alloc, ", ")))
	reported := "never"
	if c.Status.Inventory != nil {
		reported = c.Status.Inventory.ReportedAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(tw, "Reported:\t%s\n", reported)
	tw.Flush()

	if len(c.Spec.NodePools) > 0 {
		fmt.Fprintln(w, "Node pools:")
		tw = tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tCOUNT\tCPU\tMEMORY\tPODS\tZONE\tTAINTS")
		for _, p := range c.Spec.NodePools {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%d\t%s\t%d\n", p.Name, p.Count, quantity(p.CPU), quantity(p.Memory), p.Pods, dash(p.Zone), len(p.Taints))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "Conditions:")
	tw = tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tAGE\tMESSAGE")
	for _, cond := range c.Status.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", cond.Type, cond.Status, cond.Reason, age(cond.LastTransitionTime), cond.Message)
	}
	tw.Flush()
	if len(events) > 0 {
		sort.Slice(events, func(i, j int) bool { return eventTime(events[i]).Before(eventTime(events[j])) })
		if len(events) > 10 {
			events = events[len(events)-10:]
		}
		fmt.Fprintln(w, "Events:")
		tw = tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "  AGE\tTYPE\tREASON\tMESSAGE")
		for _, e := range events {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", age(metav1.NewTime(eventTime(e))), e.Type, e.Reason, e.Message)
		}
		tw.Flush()
	}
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func quantity(q *resource.Quantity) string {
	if q == nil {
		return "-"
	}
	return q.String()
}

func newClusterScaleCmd(g *globals) *cobra.Command {
	var pool string
	var nodes, minNodes, maxNodes int32
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "scale NAME (--nodes N | --min MIN --max MAX)",
		Short: "Change the number of nodes in a node pool, or the bounds it autoscales within; removed nodes are drained first",
		Example: `  convoy cluster scale us-east --nodes 5
  convoy cluster scale us-east --min 2 --max 4   # autoscale from pending pods and idle nodes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			fixed, bounds := cmd.Flags().Changed("nodes"), cmd.Flags().Changed("min") || cmd.Flags().Changed("max")
			switch {
			case fixed && bounds:
				return usageError("pass --nodes N for a fixed count, or --min and --max for an autoscaled pool, not both")
			case !fixed && !bounds:
				return usageError("--nodes N, or --min MIN --max MAX, is required")
			case bounds && (!cmd.Flags().Changed("min") || !cmd.Flags().Changed("max")):
				return usageError("--min and --max go together")
			case bounds && (minNodes < 0 || maxNodes < 1 || minNodes > maxNodes || maxNodes > v1alpha1.MaxNodesPerPool):
				return usageError("--min %d --max %d is out of range; use 0 <= min <= max, 1 <= max <= %d", minNodes, maxNodes, v1alpha1.MaxNodesPerPool)
			case fixed && (nodes < 0 || nodes > v1alpha1.MaxNodesPerPool):
				return usageError("--nodes %d is out of range; use 0 to %d", nodes, v1alpha1.MaxNodesPerPool)
			}
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			name := args[0]
			var from int32
			err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				c, err := getCluster(ctx, hc, name)
				if err != nil {
					return err
				}
				if c.Spec.Provider == v1alpha1.ProviderImport {
					return fmt.Errorf("cluster %q is imported; scale it with the tools that made it", name)
				}
				i := slices.IndexFunc(c.Spec.NodePools, func(p v1alpha1.NodePool) bool { return p.Name == pool })
				if i < 0 && c.Spec.Profile != nil {
					// A pool of its profile's: the cluster takes a copy of the template, which
					// replaces it for this cluster alone.
					tmpl, err := profilePool(ctx, hc, c, pool)
					if err != nil {
						return err
					}
					if tmpl != nil {
						c.Spec.NodePools = append(c.Spec.NodePools, *tmpl)
						i = len(c.Spec.NodePools) - 1
					}
				}
				if i < 0 {
					var names []string
					for _, p := range c.Spec.NodePools {
						names = append(names, p.Name)
					}
					return fmt.Errorf("cluster %q has no node pool %q (pools: %s); pass --pool", name, pool, dash(strings.Join(names, ", ")))
				}
				np := &c.Spec.NodePools[i]
				from = np.Count
				if a := np.Autoscale; fixed && a != nil {
					return fmt.Errorf("pool %q of cluster %q autoscales between %d and %d nodes; move its bounds with --min and --max", pool, name, a.Min, a.Max)
				}
				if fixed {
					np.Count = nodes
					return hc.Update(ctx, c)
				}
				if np.Autoscale == nil {
					np.Autoscale = &v1alpha1.NodePoolAutoscale{}
				}
				np.Autoscale.Min, np.Autoscale.Max = minNodes, maxNodes
				np.Count = min(max(np.Count, minNodes), maxNodes)
				return hc.Update(ctx, c)
			})
			if err != nil {
				return hubError("the hub", err)
			}
			out := g.streams.Out
			start := time.Now()
			if bounds {
				fmt.Fprintf(out, "Pool %q of cluster %q autoscales between %d and %d nodes\n", pool, name, minNodes, maxNodes)
			} else {
				fmt.Fprintf(out, "Scaling pool %q of cluster %q from %d to %d nodes\n", pool, name, from, nodes)
			}
			if !wait {
				return nil
			}
			res, err := waitClusters(ctx, hc, []string{name}, out, start, timeout, isUp)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Cluster %q is Ready with %d nodes after %.1fs\n", name, inventory(res[name].cluster).Nodes.Ready, res[name].took.Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&pool, "pool", "default", "node pool to scale")
	f.Int32Var(&nodes, "nodes", 0, "number of nodes (0 to 500)")
	f.Int32Var(&minNodes, "min", 0, "fewest nodes the pool autoscales down to")
	f.Int32Var(&maxNodes, "max", 0, "most nodes the pool autoscales up to")
	f.BoolVar(&wait, "wait", true, "wait until the cluster is Ready again")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")
	return cmd
}

func newClusterDeleteCmd(g *globals) *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete clusters: their processes, ports and data (imported clusters are only forgotten)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			out := g.streams.Out
			start := time.Now()
			for _, name := range args {
				c, err := getCluster(ctx, hc, name)
				if err != nil {
					return err
				}
				if err := hc.Delete(ctx, c); err != nil && !apierrors.IsNotFound(err) {
					return hubError("the hub", err)
				}
				fmt.Fprintf(out, "Deleting cluster %q\n", name)
			}
			if !wait {
				return nil
			}
			res, err := waitClusters(ctx, hc, args, out, start, timeout, isGone)
			if err != nil {
				return err
			}
			for _, name := range args {
				fmt.Fprintf(out, "Cluster %q deleted after %.1fs\n", name, res[name].took.Seconds())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the clusters are gone")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait")
	return cmd
}

func newClusterKubeconfigCmd(g *globals) *cobra.Command {
	var merge, viaHub bool
	cmd := &cobra.Command{
		Use:   "kubeconfig NAME",
		Short: "Print a cluster's admin kubeconfig, or one that reaches it through the hub as you, or merge it into your kubeconfig",
		Example: `  convoy cluster kubeconfig us-east > us-east.kubeconfig
  convoy cluster kubeconfig us-east --merge   # adds context convoy-us-east to ~/.kube/config
  convoy cluster kubeconfig us-east --via-hub > us-east-via-hub.kubeconfig   # your hub identity; us-east's RBAC decides`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			if viaHub {
				// No look at the Cluster: someone who may only go through the proxy may not
				// read Clusters; an unknown name gets 404 from the hub at the first request.
				raw, err := viaHubKubeconfig(g.kubeconfigPath(), name)
				if err != nil {
					return err
				}
				if !merge {
					_, err := g.streams.Out.Write(raw)
					return err
				}
				path, ctxName, err := mergeKubeconfig(raw, "convoy-"+name+"-via-hub")
				if err != nil {
					return err
				}
				fmt.Fprintf(g.streams.Out, "Merged cluster %q (through the hub) into %s as context %q; use it with: kubectl --context %s get pods -A\n", name, path, ctxName, ctxName)
				return nil
			}
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			if _, err := getCluster(ctx, hc, name); err != nil {
				return err
			}
			raw, err := adminKubeconfig(ctx, hc, name)
			if err != nil {
				return err
			}
			if !merge {
				_, err := g.streams.Out.Write(raw)
				return err
			}
			path, ctxName, err := mergeKubeconfig(raw, "convoy-"+name)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.streams.Out, "Merged cluster %q into %s as context %q; use it with: kubectl --context %s get nodes\n", name, path, ctxName, ctxName)
			return nil
		},
	}
	cmd.Flags().BoolVar(&merge, "merge", false, "merge into $KUBECONFIG (its first file) or ~/.kube/config instead of printing")
	cmd.Flags().BoolVar(&viaHub, "via-hub", false, "a kubeconfig that reaches the cluster through the hub (its agent's tunnel) with your own hub credentials: the hub impersonates you there, so the cluster's RBAC decides; it works for clusters the hub cannot reach directly")
	return cmd
}

// viaHubKubeconfig is a kubeconfig for cluster through the hub: the hub's server at the
// cluster's proxy path, with the hub kubeconfig's CA and user (its current context's).
func viaHubKubeconfig(hubKubeconfig, cluster string) ([]byte, error) {
	hubCfg, err := clientcmd.LoadFromFile(hubKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("read the hub kubeconfig %s: %w", hubKubeconfig, err)
	}
	if err := clientcmd.ResolveLocalPaths(hubCfg); err != nil {
		return nil, fmt.Errorf("read the hub kubeconfig %s: %w", hubKubeconfig, err)
	}
	cur := hubCfg.Contexts[hubCfg.CurrentContext]
	if cur == nil || hubCfg.Clusters[cur.Cluster] == nil || hubCfg.AuthInfos[cur.AuthInfo] == nil {
		return nil, fmt.Errorf("the hub kubeconfig %s has no complete current context; pass one with --kubeconfig", hubKubeconfig)
	}
	server := *hubCfg.Clusters[cur.Cluster]
	server.Server = strings.TrimSuffix(server.Server, "/") + v1alpha1.ClusterProxyPath(cluster)
	name := "convoy-" + cluster + "-via-hub"
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = &server
	out.AuthInfos[name] = hubCfg.AuthInfos[cur.AuthInfo]
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	out.CurrentContext = name
	return clientcmd.Write(*out)
}

// mergeKubeconfig adds the single-context kubeconfig raw to the user's kubeconfig file under
// the names ctxName, replacing entries of that name, and leaves the current context alone.
func mergeKubeconfig(raw []byte, ctxName string) (string, string, error) {
	src, err := clientcmd.Load(raw)
	if err != nil {
		return "", "", fmt.Errorf("read cluster kubeconfig: %w", err)
	}
	srcCtx := src.Contexts[src.CurrentContext]
	if srcCtx == nil {
		return "", "", errors.New("the cluster kubeconfig has no current context")
	}
	path := clientcmd.RecommendedHomeFile
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
		path = filepath.SplitList(env)[0]
	}
	dst, err := clientcmd.LoadFromFile(path)
	if errors.Is(err, os.ErrNotExist) {
		dst = clientcmdapi.NewConfig()
	} else if err != nil {
		return "", "", fmt.Errorf("read %s: %w", path, err)
	}
	dst.Clusters[ctxName] = src.Clusters[srcCtx.Cluster]
	dst.AuthInfos[ctxName] = src.AuthInfos[srcCtx.AuthInfo]
	dst.Contexts[ctxName] = &clientcmdapi.Context{Cluster: ctxName, AuthInfo: ctxName}
	if dst.CurrentContext == "" {
		dst.CurrentContext = ctxName
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", err
	}
	if err := clientcmd.WriteToFile(*dst, path); err != nil {
		return "", "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, ctxName, nil
}

// adminKubeconfig is the admin kubeconfig of cluster name, as the hub keeps it.
func adminKubeconfig(ctx context.Context, hc client.Client, name string) ([]byte, error) {
	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.KubeconfigSecretName(name)}
	if err := hc.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("cluster %q has no kubeconfig yet; wait until it is provisioned (`convoy cluster describe %s`)", name, name)
		}
		return nil, hubError("the hub", err)
	}
	return secret.Data[v1alpha1.KubeconfigSecretKey], nil
}

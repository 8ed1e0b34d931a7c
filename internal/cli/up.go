package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/edgepool"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/version"
)

// fleet is the default set of clusters `convoy up` brings up: one per region, three zones each.
var fleet = []struct{ name, region string }{
	{"us-east", "us-east"},
	{"us-west", "us-west"},
	{"eu-west", "eu-west"},
}

type upOptions struct {
	dataDir, binDir, healthAddr string
	edgeAddresses               string
	nodes, maxNodes             int32
	nodeKind                    string
	version                     string
	timeout                     time.Duration
}

// fleetProfile is the ClusterProfile `convoy up` builds its clusters from.
const fleetProfile = "fleet"

// fleetIdle is how long the last node of a fleet cluster's pool runs nothing but DaemonSet
// pods before it goes.
const fleetIdle = 30 * time.Second

func newUpCmd(g *globals) *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a hub in the background and a fleet of three local clusters, and wait until all are Ready",
		Long: `Start a hub in the background (unless one runs on the data dir already) and the clusters
us-east, us-west and eu-west (environment prod), then wait until all are Ready. Each has two real
nodes in zones a and b (containerd and a kubelet each, on this machine; needs root), or, with
--node-kind simulated, three kwok nodes in zones a, b and c; the pool adds a node when a pod
waits for room, up to --max-nodes, and gives it back once idle for 30s. All three are built from one
ClusterProfile, fleet, which holds their Kubernetes version and node pool: change it (convoy
profile upgrade fleet VERSION) and they move together, cluster by cluster. Running it again
reuses what exists.
` + "`convoy down`" + ` stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), g) },
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", hub.DefaultDataDir(), "the hub's data dir ($CONVOY_DATA_DIR)")
	f.StringVar(&o.binDir, "bin-dir", kubeproc.DefaultBinDir(), "directory with the upstream binaries ($CONVOY_BIN_DIR)")
	f.StringVar(&o.healthAddr, "health-addr", "127.0.0.1:9440", "health address of the hub")
	f.Int32Var(&o.nodes, "nodes", 0, "nodes per cluster (default 2 real, or 3 simulated)")
	f.Int32Var(&o.maxNodes, "max-nodes", 0, "most nodes per cluster: the pool autoscales between --nodes and this from pending pods and idle nodes (default one more than --nodes)")
	f.StringVar(&o.nodeKind, "node-kind", "real", "real or simulated (kwok: nothing runs, thousands fit)")
	f.StringVar(&o.version, "kubernetes-version", version.Kubernetes, "the Kubernetes version of the fleet's profile, when up creates it (this hub has "+version.Kubernetes+" and "+version.KubernetesPrevious+")")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long to wait for the fleet")
	f.StringVar(&o.edgeAddresses, "edge-addresses", hub.DefaultEdgeAddresses.String(), "range (CIDR) the hub gives the edge pools' addresses from, when it starts the hub")
	return cmd
}

// ensureProfile creates the fleet's profile unless it exists: the version asked for, and one
// node pool, default, of the nodes asked for.
func (o *upOptions) ensureProfile(ctx context.Context, hc client.Client, out io.Writer, start time.Time) error {
	p := &v1alpha1.ClusterProfile{}
	err := hc.Get(ctx, client.ObjectKey{Name: fleetProfile}, p)
	switch {
	case err == nil:
		fmt.Fprintf(out, "  %6.1fs  profile %s exists (Kubernetes %s); reusing it as it is (change it with convoy profile upgrade, or kubectl edit clusterprofile %s)\n",
			time.Since(start).Seconds(), fleetProfile, p.Spec.KubernetesVersion, fleetProfile)
		return nil
	case !apierrors.IsNotFound(err):
		return hubError("the hub", err)
	}
	co := &createOptions{nodes: o.nodes, nodeKind: o.nodeKind, cpu: "4", memory: "16Gi", pods: 110, provider: "local"}
	shape, err := co.cluster("shape")
	if err != nil {
		return err
	}
	// The pool grows by a node when a pod waits for room, and gives an idle node back after
	// fleetIdle: on one machine, memory is worth returning soon (cluster-autoscaler's default
	// is 10 minutes, for clouds that bill by the hour).
	shape.Spec.NodePools[0].Autoscale = &v1alpha1.NodePoolAutoscale{Min: o.nodes, Max: o.maxNodes, IdleSeconds: ptr.To(int32(fleetIdle / time.Second))}
	// The add-ons the clusters run, at the versions this Convoy ships: the metrics collector
	// on every cluster, and on real nodes CoreDNS, kube-proxy and the storage provisioner.
	addons := []v1alpha1.Addon{{Name: v1alpha1.AddonMetrics}}
	if o.nodeKind == "real" {
		addons = append(addons, v1alpha1.Addon{Name: v1alpha1.AddonCoreDNS}, v1alpha1.Addon{Name: v1alpha1.AddonKubeProxy}, v1alpha1.Addon{Name: v1alpha1.AddonStorage})
	}
	p = &v1alpha1.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Name: fleetProfile},
		Spec: v1alpha1.ClusterProfileSpec{
			KubernetesVersion: o.version,
			Addons:            addons,
			NodePools:         shape.Spec.NodePools,
		},
	}
	if err := hc.Create(ctx, p); err != nil && !apierrors.IsAlreadyExists(err) {
		return hubError("the hub", err)
	}
	fmt.Fprintf(out, "  %6.1fs  profile %s created (Kubernetes %s, %d %s nodes per cluster, autoscaling to %d)\n", time.Since(start).Seconds(), fleetProfile, o.version, o.nodes, o.nodeKind, o.maxNodes)
	return nil
}

func (o *upOptions) run(ctx context.Context, g *globals) error {
	out := g.streams.Out
	if _, err := netip.ParsePrefix(o.edgeAddresses); err != nil {
		return usageError("--edge-addresses %q is not a CIDR range such as %s", o.edgeAddresses, hub.DefaultEdgeAddresses)
	}
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	layout := hub.Layout{Dir: dataDir}
	fmt.Fprintf(out, "Bringing up Convoy: a hub and %d local clusters (data in %s)\n", len(fleet), dataDir)

	zones := []string{"a", "b"}
	switch o.nodeKind {
	case "real":
		if o.nodes == 0 {
			o.nodes = 2
		}
		if err := local.MissingForRealNodes(o.binDir); err != nil {
			return fmt.Errorf("%w\n(or bring up simulated clusters: convoy up --node-kind simulated)", err)
		}
	case "simulated":
		if o.nodes == 0 {
			o.nodes = 3
		}
		zones = []string{"a", "b", "c"}
	default:
		return usageError("--node-kind %q: use real or simulated", o.nodeKind)
	}
	if o.maxNodes == 0 {
		o.maxNodes = o.nodes + 1
	}
	if o.maxNodes < o.nodes {
		return usageError("--max-nodes %d is below --nodes %d; the pool autoscales between them", o.maxNodes, o.nodes)
	}
	if o.nodeKind == "real" && o.maxNodes > 10 {
		return usageError("--max-nodes %d: a real node pool has at most 10 nodes", o.maxNodes)
	}
	if o.maxNodes > v1alpha1.MaxNodesPerPool {
		return usageError("--max-nodes %d: a node pool has at most %d nodes", o.maxNodes, v1alpha1.MaxNodesPerPool)
	}
	start := time.Now()
	if pid, running := kubeproc.LockHolder(layout.Lock()); running {
		fmt.Fprintf(out, "  %6.1fs  hub already running (pid %d); reusing it, with the edge addresses it started with\n", 0.0, pid)
	} else {
		fmt.Fprintf(out, "  %6.1fs  hub starting (log: %s)\n", 0.0, filepath.Join(layout.Logs(), "hub.log"))
		if err := o.startHub(ctx, layout); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %6.1fs  hub ready\n", time.Since(start).Seconds())
	}

	g.hubKubeconfig = layout.Kubeconfig()
	hc, err := g.hubClient()
	if err != nil {
		return err
	}
	if err := o.ensureProfile(ctx, hc, out, start); err != nil {
		return err
	}
	var names []string
	for _, f := range fleet {
		names = append(names, f.name)
		c := &v1alpha1.Cluster{}
		err := hc.Get(ctx, client.ObjectKey{Name: f.name}, c)
		switch {
		case err == nil:
			fmt.Fprintf(out, "  %6.1fs  %s exists; reusing it\n", time.Since(start).Seconds(), f.name)
			continue
		case !apierrors.IsNotFound(err):
			return hubError("the hub", err)
		}
		co := &createOptions{provider: "local", nodes: o.nodes, nodeKind: o.nodeKind, region: f.region, zones: zones, env: "prod", cpu: "4", memory: "16Gi", pods: 110, profile: fleetProfile}
		c, err = co.cluster(f.name)
		if err != nil {
			return err
		}
		if err := hc.Create(ctx, c); err != nil && !apierrors.IsAlreadyExists(err) {
			return hubError("the hub", err)
		}
		fmt.Fprintf(out, "  %6.1fs  %s created (%d %s nodes in %s, zones %s)\n", time.Since(start).Seconds(), f.name, o.nodes, o.nodeKind, f.region, strings.Join(zones, ","))
	}
	if _, err := waitClusters(ctx, hc, names, out, start, o.timeout, isUp); err != nil {
		return err
	}
	demoURL, err := ensureDemoPool(ctx, hc, out, start)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nConvoy is up after %.1fs.\n\n", time.Since(start).Seconds())
	if err := getObjects(ctx, hc, &getOptions{output: "table"}, "", labels.Everything(), &v1alpha1.ClusterList{}, &v1alpha1.Cluster{}, out, clusterTable); err != nil {
		return err
	}
	self := "convoy"
	if strings.Contains(os.Args[0], "/") {
		self = os.Args[0] // as the user called it, for example bin/convoy
	}
	fmt.Fprintf(out, `
Next:
  export KUBECONFIG=%[1]s      # the hub
  kubectl get clusters
  %[3]s cluster kubeconfig us-east > us-east.kubeconfig
  kubectl --kubeconfig us-east.kubeconfig get nodes
  %[3]s edge status            # the demo's edge pool, at %[4]s
  %[3]s user add alice --email alice@example.com --group team-shop   # people: then %[3]s login
  %[3]s catalog list            # data services (make up pushes them): %[3]s catalog install redis -n demo
  %[3]s down                    # stop everything (--purge also removes %[2]s)
`, layout.Kubeconfig(), dataDir, self, demoURL)
	return nil
}

// startHub runs `convoy hub` in its own session, so that it keeps running after `up` returns,
// and waits until its /readyz answers.
func (o *upOptions) startHub(ctx context.Context, layout hub.Layout) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(layout.Logs(), 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(layout.Logs(), "hub.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "hub", "--data-dir", layout.Dir, "--bin-dir", o.binDir, "--health-addr", o.healthAddr, "--edge-addresses", o.edgeAddresses)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the hub: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.After(2 * time.Minute)
	for {
		if resp, err := http.Get("http://" + o.healthAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the hub exited (%v):\n%s", err, lastLogLines(logPath, 5))
		case <-deadline:
			return fmt.Errorf("the hub was not ready within 2 minutes; see %s", logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func lastLogLines(path string, n int) string {
	raw, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func newDownCmd(g *globals) *cobra.Command {
	var dataDir string
	var purge bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the hub and every local cluster; --purge also deletes their data",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := g.streams.Out
			dir, err := filepath.Abs(dataDir)
			if err != nil {
				return err
			}
			layout := hub.Layout{Dir: dir}
			if pid, running := kubeproc.LockHolder(layout.Lock()); running && pid > 0 {
				fmt.Fprintf(out, "Stopping the hub (pid %d)\n", pid)
				if err := stopAndWait(pid, layout.Lock(), time.Minute); err != nil {
					return err
				}
			}
			stopped, err := local.StopAll(layout.Clusters(), g.log)
			for _, name := range stopped {
				fmt.Fprintf(out, "Stopped local cluster %s\n", name)
			}
			if err != nil {
				return err
			}
			// The hub's edge pools, which outlive it as the clusters do.
			if err := edgepool.StopAll(layout.Edge(), g.log); err != nil {
				return err
			}
			if purge {
				if !kubeprocExists(layout.State()) && !kubeprocExists(layout.Lock()) {
					return fmt.Errorf("%s does not look like a Convoy data dir (no hub.json or hub.lock); not removing it", dir)
				}
				if err := local.RemoveAllRealNodes(layout.Clusters(), g.log); err != nil {
					return err
				}
				if err := os.RemoveAll(dir); err != nil {
					return fmt.Errorf("remove %s: %w", dir, err)
				}
				fmt.Fprintf(out, "Removed %s\n", dir)
			}
			fmt.Fprintln(out, "Convoy is down.")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", hub.DefaultDataDir(), "the hub's data dir ($CONVOY_DATA_DIR)")
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the data dir: the hub's objects and every local cluster's data")
	return cmd
}

// stopAndWait sends SIGTERM to pid and waits until it releases the lock at lockPath.
func stopAndWait(pid int, lockPath string, timeout time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, held := kubeproc.LockHolder(lockPath); !held {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("pid %d did not stop within %s", pid, timeout)
}

func kubeprocExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// The demo's edge pool, which `convoy up` makes: a Gateway in namespace demo with one HTTP
// listener, as examples/web/gateway.yaml has it for other hubs.
const (
	demoNamespace = "demo"
	demoGateway   = "edge"
	demoPort      = 8080
)

// ensureDemoPool makes the demo's edge pool unless its Gateway exists, waits until the hub
// serves it, and returns its URL.
func ensureDemoPool(ctx context.Context, hc client.Client, out io.Writer, start time.Time) (string, error) {
	if err := hc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", hubError("the hub", err)
	}
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: demoNamespace, Name: demoGateway}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: v1alpha1.EdgeGatewayClass,
		Listeners:        []gatewayv1.Listener{{Name: "http", Port: demoPort, Protocol: gatewayv1.HTTPProtocolType}},
	}}
	switch err := hc.Create(ctx, gw); {
	case apierrors.IsAlreadyExists(err):
		fmt.Fprintf(out, "  %6.1fs  edge pool %s/%s exists; reusing it\n", time.Since(start).Seconds(), demoNamespace, demoGateway)
	case err != nil:
		return "", hubError("the hub", err)
	default:
		fmt.Fprintf(out, "  %6.1fs  edge pool %s/%s created (Gateway of class %s)\n", time.Since(start).Seconds(), demoNamespace, demoGateway, v1alpha1.EdgeGatewayClass)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if err := hc.Get(ctx, client.ObjectKeyFromObject(gw), gw); err != nil {
			return "", hubError("the hub", err)
		}
		p := meta.FindStatusCondition(gw.Status.Conditions, string(gatewayv1.GatewayConditionProgrammed))
		if p != nil && p.Status == metav1.ConditionTrue && p.ObservedGeneration == gw.Generation && len(gw.Status.Addresses) > 0 {
			url := fmt.Sprintf("http://%s/", net.JoinHostPort(gw.Status.Addresses[0].Value, strconv.Itoa(int(gw.Spec.Listeners[0].Port))))
			fmt.Fprintf(out, "  %6.1fs  edge pool %s/%s serving at %s\n", time.Since(start).Seconds(), demoNamespace, demoGateway, url)
			return url, nil
		}
		if time.Now().After(deadline) {
			why := "no Programmed condition yet"
			if p != nil {
				why = p.Reason + ": " + p.Message
			}
			fmt.Fprintf(out, "  %6.1fs  edge pool %s/%s not serving after a minute (%s); see `convoy edge status`\n", time.Since(start).Seconds(), demoNamespace, demoGateway, why)
			return "(not serving yet)", nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Package sim runs many simulated member clusters in one process against a real hub, for the
// scale benchmark and the chaos tests. Each simulated cluster runs the real agent
// (internal/agent): it joins with a bootstrap token, heartbeats through its Lease, reports its
// inventory, watches its Works and writes their status. Only the member is simulated, by
// Member, an in-memory cluster. Tests, benchmarks and `convoy agent --simulate` import it.
package sim

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/agent"
	"github.com/convoy-dev/convoy/internal/join"
)

// Options configure a Fleet.
type Options struct {
	// HubURL and HubCA reach the hub's API server.
	HubURL string
	HubCA  []byte
	// DeliveryAddr is the agents' agent.Options.DeliveryAddr: empty for the hub's own.
	DeliveryAddr string
	// DeliveryPort is the agents' agent.Options.DeliveryPort: with it, they join on the
	// hub's delivery port instead of through its API server.
	DeliveryPort string
	// StateDir holds one directory per cluster with its agent's identity.
	StateDir string
	// AvailableAfter is how long a simulated workload takes to become available.
	AvailableAfter time.Duration
	// HubQPS limits each agent's requests to the hub; zero is the agent's default.
	HubQPS float32
	// Version is the agent version the clusters report.
	Version string
	// Log receives the agents' logs; nil discards them.
	Log *slog.Logger
}

// Fleet runs simulated clusters.
type Fleet struct {
	opts Options

	mu       sync.Mutex
	clusters map[string]*Cluster
}

// Cluster is one simulated cluster with its agent.
type Cluster struct {
	Name   string
	Member *Member

	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time
}

// NewFleet returns an empty fleet.
func NewFleet(o Options) *Fleet {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Fleet{opts: o, clusters: map[string]*Cluster{}}
}

// Start runs the agent of a simulated cluster until Stop, StopAll or the end of ctx. The
// bootstrap token is needed only the first time: a restarted cluster keeps its identity in
// its state directory and its member's contents.
func (f *Fleet) Start(ctx context.Context, name, bootstrapToken string) (*Cluster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.clusters[name]
	if c != nil && c.running() {
		return nil, fmt.Errorf("simulated cluster %q runs already", name)
	}
	if c == nil {
		c = &Cluster{Name: name, Member: NewMember(name, f.opts.AvailableAfter)}
		f.clusters[name] = c
	}
	dir := filepath.Join(f.opts.StateDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(dir, "bootstrap-token")
	if bootstrapToken != "" {
		if err := os.WriteFile(tokenFile, []byte(bootstrapToken), 0o600); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	c.cancel, c.done, c.started = cancel, make(chan struct{}), time.Now()
	o := agent.Options{
		Cluster: name, HubURL: f.opts.HubURL, HubCA: f.opts.HubCA, DeliveryAddr: f.opts.DeliveryAddr, DeliveryPort: f.opts.DeliveryPort,
		BootstrapTokenFile: tokenFile, StateDir: dir, Member: c.Member,
		HubQPS: f.opts.HubQPS, Version: f.opts.Version, Log: f.opts.Log,
	}
	go func(done chan struct{}) {
		defer close(done)
		if err := agent.Run(ctx, o); err != nil {
			f.opts.Log.Error("simulated agent stopped", "cluster", name, "err", err)
		}
	}(c.done)
	return c, nil
}

// Get returns a simulated cluster started before, or nil.
func (f *Fleet) Get(name string) *Cluster {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clusters[name]
}

// StateDir is where a cluster's agent keeps its identity.
func (f *Fleet) StateDir(name string) string { return filepath.Join(f.opts.StateDir, name) }

// Clusters lists the fleet's clusters.
func (f *Fleet) Clusters() []*Cluster {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*Cluster, 0, len(f.clusters))
	for _, c := range f.clusters {
		out = append(out, c)
	}
	return out
}

// StopAll stops every agent and waits for them.
func (f *Fleet) StopAll() {
	for _, c := range f.Clusters() {
		c.Stop()
	}
	for _, c := range f.Clusters() {
		c.Member.close()
	}
}

// Stop stops the cluster's agent (the member keeps its contents) and waits for it: a
// partitioned or crashed agent. Fleet.Start runs it again.
func (c *Cluster) Stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
}

func (c *Cluster) running() bool {
	if c.done == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Register creates a Cluster on the hub that is known only through its agent (an imported
// cluster without a kubeconfig), with the given labels, and returns a bootstrap token for it.
func Register(ctx context.Context, hub client.Client, name string, labels map[string]string, ttl time.Duration) (string, error) {
	c := &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderImport},
	}
	err := hub.Create(ctx, c)
	if apierrors.IsAlreadyExists(err) {
		// Registered before (a second run): only a cluster known through its agent alone may
		// be taken over by a simulated agent.
		if err := hub.Get(ctx, client.ObjectKey{Name: name}, c); err != nil {
			return "", fmt.Errorf("register cluster %s: %w", name, err)
		}
		if !c.AgentOnly() {
			return "", fmt.Errorf("cluster %s exists and is a %s cluster; pick another name for the simulated ones", name, c.Spec.Provider)
		}
	} else if err != nil {
		return "", fmt.Errorf("register cluster %s: %w", name, err)
	}
	t, err := join.Issue(ctx, hub, name, ttl)
	if err != nil {
		return "", err
	}
	return t.Value, nil
}

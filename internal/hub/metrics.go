package hub

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
	"github.com/convoy-dev/convoy/internal/plan"
)

// frontProxyName is the common name of the API server's front-proxy client certificate, the
// only one the hub's aggregated APIs take requests from.
const frontProxyName = "convoy-hub-front-proxy"

// metricsService is the Service (of type ExternalName, localhost) through which the hub's API
// server reaches the hub process's aggregated API; its serving certificate names it.
const metricsService = "convoy-hub-metrics"

// frontProxy prepares what the API server needs to forward requests to the hub's aggregated
// APIs: a CA of its own (so that no other client certificate the hub's CA signs can speak for a
// user), the API server's client certificate, and the flags. It keeps the CA's pool for the
// APIs to check requests with.
func (h *Hub) frontProxy() ([]string, error) {
	dir := filepath.Join(h.layout.PKI(), "front-proxy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("prepare front-proxy PKI: %w", err)
	}
	ca, err := kubeproc.LoadOrCreateCA(dir, "convoy-hub-front-proxy-ca")
	if err != nil {
		return nil, fmt.Errorf("prepare front-proxy PKI: %w", err)
	}
	proxyClient, err := ca.LoadOrIssue(dir, kubeproc.CertRequest{Name: "front-proxy-client", CommonName: frontProxyName})
	if err != nil {
		return nil, fmt.Errorf("prepare front-proxy PKI: %w", err)
	}
	h.frontProxyCA = x509.NewCertPool()
	h.frontProxyCA.AddCert(ca.Cert)
	return []string{
		"--requestheader-client-ca-file=" + kubeproc.CACertPath(dir),
		"--requestheader-allowed-names=" + frontProxyName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + proxyClient.CertPath,
		"--proxy-client-key-file=" + proxyClient.KeyPath,
	}, nil
}

// serveMetricsAPI serves the metrics query API before the API server starts, so that the
// APIService, which points at its port, is available as soon as the API server is (an
// APIService that is not makes every client's discovery, and the controller-manager's garbage
// collector and namespace controller, report the group as failed). Its port is the last run's
// (hub.json), else any free one; the store's port is chosen here too, and until the store
// answers the API answers 503.
func (h *Hub) serveMetricsAPI() error {
	if h.opts.MetricsRetention < 0 && h.opts.LogsRetention < 0 {
		return nil
	}
	l, tlsConfig, err := h.aggregatedAPI("hub-metrics", metricsService, func(st *state) *int { return &st.MetricsPort })
	if err != nil {
		return fmt.Errorf("serve the metrics query API: %w", err)
	}
	h.metricsPort = l.Addr().(*net.TCPAddr).Port
	api := &observe.QueryAPI{Store: h.metricsStore.Load, StoreAuth: h.metricsAuth, FrontProxyCA: h.frontProxyCA, FrontProxyNames: []string{frontProxyName},
		ClusterLabels: h.clusterLabels, Log: h.log.With("component", "metrics-query")}
	if h.opts.LogsRetention >= 0 {
		// The log store's API is served beside the metrics store's, by the same server.
		api.LogStore, api.LogStoreAuth, api.LogLimit = h.logStore.Load, h.logAuth, &observe.LogLimiter{}
	}
	h.metricsServer = &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig}
	go func() {
		if err := h.metricsServer.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("metrics query API stopped", "err", err)
		}
	}()
	return nil
}

// startMetricsStore runs the fleet metrics store (VictoriaMetrics, a supervised child, its
// data in the data dir, on 127.0.0.1 behind a password that only the hub holds) and has it
// scrape the hub's API server. A store that does not come up stops nothing else: the hub
// logs it, keeps restarting it, and /status shows it.
func (h *Hub) startMetricsStore(ctx context.Context, bin string) error {
	if h.opts.MetricsRetention < 0 {
		return nil
	}
	dir := h.layout.Metrics()
	// The store scrapes the hub's API server with a certificate of the group that the
	// built-in role system:monitoring is bound to.
	scraper, err := h.pki.CA.LoadOrIssue(h.layout.PKI(), kubeproc.CertRequest{
		Name: "metrics-scraper", CommonName: "convoy-metrics-scraper", Organization: []string{"system:monitoring"},
	})
	if err != nil {
		return fmt.Errorf("prepare hub PKI: %w", err)
	}
	u, err := url.Parse(h.apiserverURL)
	if err != nil {
		return err
	}
	scrape, err := observe.ScrapeConfig([]observe.ScrapeTarget{{
		Job: "hub-apiserver", Address: u.Host, CAFile: kubeproc.CACertPath(h.layout.PKI()),
		CertFile: scraper.CertPath, KeyFile: scraper.KeyPath,
	}})
	if err != nil {
		return err
	}
	scrapeFile := filepath.Join(dir, "scrape.yaml")
	if err := kubeproc.WriteFileAtomic(scrapeFile, scrape, 0o600); err != nil {
		return err
	}
	stop, err := h.startStore("metrics", kubeproc.VictoriaMetrics, bin, func(port int) []string {
		return observe.MetricsStore{
			DataDir: filepath.Join(dir, "data"), Port: port, Retention: h.opts.MetricsRetention,
			MemoryBytes: 256 << 20, ScrapeConfig: scrapeFile, PasswordFile: h.metricsPasswordFile,
		}.Args()
	}, &h.metricsStore, &h.metricsHealth)
	h.stopMetricsWatch = stop
	return err
}

// startStore starts a fleet store (kind "metrics" or "log") as the child name, with args for
// its port, and watches it (watchStore) until the returned function is called. Its port is
// chosen just before it starts (a port chosen earlier could be taken meanwhile, and the
// supervisor restarts it on the same one). The hub does not wait for it: a store replaying a
// large data dir, or failing, holds nothing else back.
func (h *Hub) startStore(kind, name, bin string, args func(port int) []string, current *atomic.Pointer[url.URL], health *atomic.Pointer[StoreStatus]) (context.CancelFunc, error) {
	port, err := kubeproc.FreePort()
	if err != nil {
		return nil, err
	}
	store, err := h.startChild(name, bin, args(port))
	if err != nil {
		return nil, err
	}
	storeURL := &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}
	health.Store(&StoreStatus{Address: storeURL.Host, Error: "starting"})
	// Watched for as long as the hub runs, not the start's context.
	wctx, stop := context.WithCancel(context.Background())
	go h.watchStore(wctx, kind, storeURL, store, current, health)
	return stop, nil
}

// StoreStatus is the health of a fleet store (metrics or logs) in the hub's /status.
type StoreStatus struct {
	// Address is where it listens, on 127.0.0.1.
	Address string `json:"address"`
	// Up says whether it answered its last health check; Since is when that last changed.
	Up    bool      `json:"up"`
	Since time.Time `json:"since,omitzero"`
	// Error is why it is down.
	Error string `json:"error,omitempty"`
}

// metricsHealthInterval is how often the hub checks its metrics and log stores.
const metricsHealthInterval = 5 * time.Second

// watchStore checks a store's /health every metricsHealthInterval until ctx ends, and keeps
// current (the store's URL while it answers, else nil) and health. While it answers, the query
// API passes requests to it; while it does not, the query API answers 503 at once (agents'
// collectors keep their samples or lines, and send them when it is back), /status says it is
// down and why, and the log says so once. kind is "metrics" or "log".
func (h *Hub) watchStore(ctx context.Context, kind string, store *url.URL, p *kubeproc.Process, current *atomic.Pointer[url.URL], health *atomic.Pointer[StoreStatus]) {
	hc := &http.Client{Timeout: 2 * time.Second}
	check := func() error {
		if st := p.Status(); !st.Running {
			return fmt.Errorf("not running (restarts %d, last exit: %s)", st.Restarts, st.LastExit)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, store.String()+"/health", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	}
	warned := false
	for first := true; ; first = false {
		err := check()
		if ctx.Err() != nil {
			return
		}
		was := health.Load()
		now := &StoreStatus{Address: store.Host, Up: err == nil, Since: was.Since}
		if err != nil {
			now.Error = err.Error()
		}
		if first || was.Up != now.Up {
			now.Since = time.Now()
			switch {
			case now.Up:
				current.Store(store)
				h.log.Info("the fleet "+kind+" store answers", "address", store.Host)
			case !first:
				current.Store(nil)
				warned = true
				h.log.Error("the fleet "+kind+" store is down; the hub runs on without it, and members keep what they collect until it is back", "err", err)
			}
		}
		if !now.Up && !warned && time.Since(now.Since) > h.opts.StepTimeout {
			warned = true
			h.log.Error("the fleet "+kind+" store does not answer; the hub runs on without it, and keeps restarting it", "err", err)
		}
		health.Store(now)
		// A store that does not answer (yet) is checked often, so that it serves as soon
		// as it does.
		wait := metricsHealthInterval
		if !now.Up {
			wait = 500 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// prepareMetricsAuth makes (once) the password that the store asks of every request, which
// only the hub process holds: the store's port takes no request that did not come through the
// hub's query API.
func (h *Hub) prepareMetricsAuth() error {
	if h.opts.MetricsRetention < 0 {
		return nil
	}
	var err error
	h.metricsPasswordFile, h.metricsAuth, err = storePassword(h.layout.Metrics())
	return err
}

// storePassword makes (once) the password of a store whose data is in dir, in dir/password.
func storePassword(dir string) (string, observe.BasicAuth, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", observe.BasicAuth{}, fmt.Errorf("prepare the store's dir: %w", err)
	}
	file := filepath.Join(dir, "password")
	raw, err := os.ReadFile(file)
	if err != nil || len(raw) < 32 {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", observe.BasicAuth{}, err
		}
		raw = []byte(hex.EncodeToString(b))
		if err := kubeproc.WriteFileDurable(file, raw, 0o600); err != nil {
			return "", observe.BasicAuth{}, fmt.Errorf("prepare the store's password: %w", err)
		}
	}
	return file, observe.BasicAuth{User: observe.StoreUser, Password: string(raw)}, nil
}

// MetricsStoreURL is the fleet metrics store's address on 127.0.0.1 (nil when it is off). It
// asks a password of every request but /health, which only the hub holds.
func (h *Hub) MetricsStoreURL() *url.URL { return h.metricsStore.Load() }

// useClusters lets the metrics API read Clusters from the hub's cache, once it runs.
func (h *Hub) useClusters(cached client.Reader) { h.clusters.Store(&cached) }

// NoRegion is the region label of the samples of a cluster that has no region.
const NoRegion = "none"

// clusterLabels are the labels every sample of a cluster gets in the fleet store: its name
// and its region. Until the hub's cache runs, or for a Cluster it does not hold, none (the
// agent's collector keeps its samples, and sends them again).
func (h *Hub) clusterLabels(cluster string) (map[string]string, bool) {
	r := h.clusters.Load()
	if r == nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := &v1alpha1.Cluster{}
	if err := (*r).Get(ctx, client.ObjectKey{Name: cluster}, c, client.UnsafeDisableDeepCopy); err != nil {
		return nil, false
	}
	// Always both: the store drops a label given an empty value instead of setting it, so a
	// cluster without a region gets "none", not what its agent wrote.
	region := c.Spec.Region
	if region == "" {
		region = NoRegion
	}
	return map[string]string{"cluster": c.Name, "region": region}, true
}

// registerMetricsAPI points the hub's API server at the aggregated APIs of the stores that run:
// the Service, and for each store its APIService and the ClusterRole that grants reading it
// (the metrics store's query API, the log store's query API and tail). It removes the APIService
// of a store that is off instead: one left by an earlier run would point at nothing.
func (h *Hub) registerMetricsAPI(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return fmt.Errorf("build client: %w", err)
	}
	port := h.metricsPort
	apiService := func(group, version string) map[string]any {
		return map[string]any{
			"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
			"metadata": map[string]any{"name": version + "." + group},
			"spec": map[string]any{
				"group": group, "version": version,
				"service":  map[string]any{"namespace": v1alpha1.SystemNamespace, "name": metricsService, "port": int64(port)},
				"caBundle": base64.StdEncoding.EncodeToString(h.pki.CA.CertPEM), "groupPriorityMinimum": int64(1000), "versionPriority": int64(15),
			},
		}
	}
	var objs []map[string]any
	var off []string
	if h.opts.MetricsRetention >= 0 || h.opts.LogsRetention >= 0 {
		objs = append(objs,
			// The hub makes its namespace later too; the Service needs it now.
			map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": v1alpha1.SystemNamespace}},
			map[string]any{
				"apiVersion": "v1", "kind": "Service",
				"metadata": map[string]any{"name": metricsService, "namespace": v1alpha1.SystemNamespace},
				"spec": map[string]any{"type": "ExternalName", "externalName": "localhost",
					"ports": []any{map[string]any{"name": "https", "port": int64(port), "protocol": "TCP"}}},
			})
	}
	if h.opts.MetricsRetention >= 0 {
		endpoints := []any{}
		for _, e := range v1alpha1.MetricsQueryEndpoints {
			endpoints = append(endpoints, "api/"+e)
		}
		objs = append(objs, apiService(v1alpha1.MetricsGroup, v1alpha1.MetricsVersion), map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": v1alpha1.MetricsReaderRole},
			"rules":    []any{map[string]any{"apiGroups": []any{v1alpha1.MetricsGroup}, "resources": endpoints, "verbs": []any{"get", "create"}}},
		})
	} else {
		off = append(off, v1alpha1.MetricsVersion+"."+v1alpha1.MetricsGroup)
	}
	if h.opts.LogsRetention >= 0 {
		endpoints := []any{}
		for _, e := range v1alpha1.LogsQueryEndpoints {
			endpoints = append(endpoints, "select/"+e)
		}
		objs = append(objs, apiService(v1alpha1.LogsGroup, v1alpha1.LogsVersion), map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": v1alpha1.LogsReaderRole},
			"rules": []any{
				map[string]any{"apiGroups": []any{v1alpha1.LogsGroup}, "resources": endpoints, "verbs": []any{"get", "create"}},
				map[string]any{"apiGroups": []any{v1alpha1.LogsGroup}, "resources": []any{"tail"}, "verbs": []any{"list", "watch"}},
			},
		})
	} else {
		off = append(off, v1alpha1.LogsVersion+"."+v1alpha1.LogsGroup)
	}
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("register the fleet stores' APIs (%s %s): %w", u.GetKind(), u.GetName(), err)
		}
	}
	for _, name := range off {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("apiregistration.k8s.io/v1")
		u.SetKind("APIService")
		u.SetName(name)
		if err := c.Delete(ctx, u); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove the APIService %s of a store that is off: %w", name, err)
		}
	}
	return nil
}

// gateReader reads the rollouts' metric gates from the fleet metrics store, directly (the hub
// holds its password), each restricted to its wave's clusters and its Placement's namespace
// (extra_filters): whoever may write a Placement reads no other series through its gate. While
// the store is off or down, every reading is an error that says so.
type gateReader struct {
	h      *Hub
	client *http.Client
}

func (g gateReader) Read(ctx context.Context, q plan.MetricQuery) plan.Reading {
	store := g.h.metricsStore.Load()
	if store == nil {
		why := "the fleet metrics store is down (convoy hub status: metricsStore)"
		if g.h.opts.MetricsRetention < 0 {
			why = "the hub runs no fleet metrics store (convoy hub --metrics-retention)"
		}
		return plan.Reading{Taken: true, Err: why}
	}
	u := *store
	u.Path = "/api/v1/query"
	// nocache: at the time it is read, not 30 s before (the store's latency offset), so that a
	// gate's delay need only cover its query's window and a scrape.
	u.RawQuery = url.Values{"query": {q.Query}, "extra_filters[]": {q.Filter}, "nocache": {"1"}}.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return plan.Reading{Taken: true, Err: err.Error()}
	}
	req.SetBasicAuth(g.h.metricsAuth.User, g.h.metricsAuth.Password)
	resp, err := g.client.Do(req)
	if err != nil {
		return plan.Reading{Taken: true, Err: "the fleet metrics store: " + err.Error()}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return plan.Reading{Taken: true, Err: "the fleet metrics store: " + err.Error()}
	}
	v, empty, err := observe.ParseNumber(raw)
	if err != nil {
		return plan.Reading{Taken: true, Err: err.Error()}
	}
	return plan.Reading{Taken: true, Value: v, Empty: empty}
}

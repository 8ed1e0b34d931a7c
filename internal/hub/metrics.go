package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
)

// VictoriaMetrics is the fleet metrics store's binary in the bin dir (hack/tools.sh builds it).
const VictoriaMetrics = "victoria-metrics"

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

// startMetrics runs the fleet metrics store (VictoriaMetrics, a supervised child, its data in
// the data dir), has it scrape the hub's API server, and serves its query API through the
// hub's API server (observe.QueryAPI behind the APIService v1alpha1.metrics.convoy.dev), with
// the ClusterRole that grants it.
func (h *Hub) startMetrics(ctx context.Context, cfg *rest.Config, bin string) error {
	if h.opts.MetricsRetention < 0 {
		// An APIService left by an earlier run would point at nothing, and every client's
		// discovery would report the group unavailable.
		return h.unregisterMetricsAPI(ctx, cfg)
	}
	dir := h.layout.Metrics()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("prepare the metrics store's dir: %w", err)
	}
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
	port, err := kubeproc.FreePort()
	if err != nil {
		return err
	}
	store, err := h.startChild(VictoriaMetrics, bin, observe.MetricsStore{
		DataDir: filepath.Join(dir, "data"), Port: port, Retention: h.opts.MetricsRetention,
		MemoryBytes: 256 << 20, ScrapeConfig: scrapeFile,
	}.Args())
	if err != nil {
		return err
	}
	storeURL := &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}
	if err := waitHTTP(ctx, storeURL.String()+"/health", store, h.opts.StepTimeout); err != nil {
		return fmt.Errorf("metrics store: %w", err)
	}
	h.metricsStore = storeURL

	// The query API, on a port of its own with a certificate for the Service's name.
	serving, err := h.pki.CA.LoadOrIssue(h.layout.PKI(), kubeproc.CertRequest{
		Name: "hub-metrics", CommonName: metricsService, Server: true,
		DNSNames: []string{metricsService + "." + v1alpha1.SystemNamespace + ".svc"},
	})
	if err != nil {
		return fmt.Errorf("prepare hub PKI: %w", err)
	}
	pair, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the metrics query API: %w", err)
	}
	api := &observe.QueryAPI{Store: storeURL, FrontProxyCA: h.frontProxyCA, FrontProxyNames: []string{frontProxyName}, Log: h.log.With("component", "metrics-query")}
	h.metricsServer = &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// A client certificate is asked for, and checked per request (QueryAPI.fromAPIServer):
		// discovery is for anyone, and any other certificate gets an answer, not a failed
		// handshake.
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
			ClientAuth: tls.RequestClientCert},
	}
	go func() {
		if err := h.metricsServer.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("metrics query API stopped", "err", err)
		}
	}()
	return h.registerMetricsAPI(ctx, cfg, l.Addr().(*net.TCPAddr).Port)
}

// registerMetricsAPI points the hub's API server at the query API: the Service, the
// APIService, and the ClusterRole that grants querying.
func (h *Hub) registerMetricsAPI(ctx context.Context, cfg *rest.Config, port int) error {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return fmt.Errorf("build client: %w", err)
	}
	endpoints := []any{}
	for _, e := range v1alpha1.MetricsQueryEndpoints {
		endpoints = append(endpoints, "api/"+e)
	}
	objs := []map[string]any{
		{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": metricsService, "namespace": v1alpha1.SystemNamespace},
			"spec": map[string]any{"type": "ExternalName", "externalName": "localhost",
				"ports": []any{map[string]any{"name": "https", "port": int64(port), "protocol": "TCP"}}},
		},
		{
			"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
			"metadata": map[string]any{"name": v1alpha1.MetricsVersion + "." + v1alpha1.MetricsGroup},
			"spec": map[string]any{
				"group": v1alpha1.MetricsGroup, "version": v1alpha1.MetricsVersion,
				"service":  map[string]any{"namespace": v1alpha1.SystemNamespace, "name": metricsService, "port": int64(port)},
				"caBundle": base64.StdEncoding.EncodeToString(h.pki.CA.CertPEM), "groupPriorityMinimum": int64(1000), "versionPriority": int64(15),
			},
		},
		{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": v1alpha1.MetricsReaderRole},
			"rules":    []any{map[string]any{"apiGroups": []any{v1alpha1.MetricsGroup}, "resources": endpoints, "verbs": []any{"get", "create"}}},
		},
	}
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("register the metrics query API (%s %s): %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

// unregisterMetricsAPI removes the APIService that registerMetricsAPI made, if any.
func (h *Hub) unregisterMetricsAPI(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return fmt.Errorf("build client: %w", err)
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("apiregistration.k8s.io/v1")
	u.SetKind("APIService")
	u.SetName(v1alpha1.MetricsVersion + "." + v1alpha1.MetricsGroup)
	if err := c.Delete(ctx, u); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove the metrics query API's APIService: %w", err)
	}
	return nil
}

// waitHTTP waits until url answers 200, while p runs.
func waitHTTP(ctx context.Context, url string, p *kubeproc.Process, timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if st := p.Status(); st.Restarts > 3 {
			return false, fmt.Errorf("%s keeps exiting: %s\n%s", st.Name, st.LastExit, st.ExitTail)
		}
		resp, err := hc.Get(url)
		if err != nil {
			last = err
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("%s: %s", url, resp.Status)
			return false, nil
		}
		return true, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w (last: %v)", err, last)
	}
	return err
}

package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
)

// TestMetricsQueryAPI queries the hub's metrics store through the hub's API server, as a
// Prometheus client would: the store scrapes the hub's API server, RBAC decides who may
// query, the store's own refusal of a bad query comes back as it is, and the store's query
// port takes no request that did not come through the API server.
func TestMetricsQueryAPI(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	ctx := context.Background()

	query := func(cfg *rest.Config, q string) (int, []byte) {
		t.Helper()
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		u := cfg.Host + v1alpha1.MetricsQueryPrefix + "/api/v1/query?" + url.Values{"query": {q}}.Encode()
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}

	// The store scrapes the hub's API server (every 15 s) and a fleet query sees it.
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		code, body := query(h.Config, `up{job="hub-apiserver"}`)
		last = fmt.Sprintf("%d %s", code, body)
		if code != http.StatusOK {
			return false, nil
		}
		res, err := observe.ParseQueryResult(body)
		if err != nil {
			return false, err
		}
		return len(res.Rows) == 1 && res.Rows[0][len(res.Columns)-2] == "1", nil
	})
	if err != nil {
		t.Fatalf("the hub's API server never up in the metrics store: %v; last answer %s", err, last)
	}

	// A query the store cannot parse gets its message, through the API server.
	code, body := query(h.Config, `sum(rate(`)
	if _, err := observe.ParseQueryResult(body); code < 400 || code >= 500 || !errors.Is(err, observe.ErrStore) {
		t.Errorf("an invalid query: %d, %v (%s), want the store's refusal", code, err, body)
	} else {
		t.Logf("an invalid query: %d, %v", code, err)
	}

	// Someone the hub knows but RBAC grants nothing is refused; the ClusterRole lets them in.
	alice := rest.CopyConfig(h.Config)
	alice.Impersonate = rest.ImpersonationConfig{UserName: "alice", Groups: []string{"team-a"}}
	if code, body := query(alice, "up"); code != http.StatusForbidden {
		t.Errorf("alice without a binding: %d %s, want 403", code, body)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "team-a-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: v1alpha1.MetricsReaderRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "team-a"}},
	}
	if err := h.Client.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		code, body := query(alice, `up{job="hub-apiserver"}`)
		last = fmt.Sprintf("%d %s", code, body)
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Errorf("alice with %s: %s", v1alpha1.MetricsReaderRole, last)
	}

	// The query API's own port refuses a request that did not come through the API server,
	// even from a client the hub's CA signed.
	var svc corev1.Service
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: "convoy-hub-metrics"}, &svc); err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("the metrics Service: %+v", svc.Spec)
	}
	tlsCfg, err := rest.TLSConfigFor(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.ServerName = "convoy-hub-metrics." + v1alpha1.SystemNamespace + ".svc"
	direct := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg.Clone()}, Timeout: 10 * time.Second}
	resp, err := direct.Get("https://127.0.0.1:" + strconv.Itoa(int(svc.Spec.Ports[0].Port)) + v1alpha1.MetricsQueryPrefix + "/api/v1/query?query=up")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a request to the query API's own port with the admin's certificate: %s, want 401", resp.Status)
	}
	// Nor does the store's own port take a request without the hub's password: not a query,
	// not a deletion.
	for _, path := range []string{"/api/v1/query?query=up", "/api/v1/admin/tsdb/delete_series?match[]=up", "/api/v1/import/prometheus"} {
		resp, err := http.Post(h.MetricsStoreURL().String()+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s on the store's own port without the password: %s, want 401", path, resp.Status)
		}
	}

	// Turned off, the store leaves no APIService behind that points at nothing (every
	// client's discovery would report the group unavailable).
	h.Options.MetricsRetention = -1
	h.Restart()
	apiService := &unstructured.Unstructured{}
	apiService.SetAPIVersion("apiregistration.k8s.io/v1")
	apiService.SetKind("APIService")
	err = h.Client.Get(ctx, client.ObjectKey{Name: v1alpha1.MetricsVersion + "." + v1alpha1.MetricsGroup}, apiService)
	if !apierrors.IsNotFound(err) {
		t.Errorf("the APIService with the store off: %v, want NotFound", err)
	}
	for _, c := range h.Children() {
		if c.Name == kubeproc.VictoriaMetrics {
			t.Errorf("the store runs although it is off: %+v", c)
		}
	}
}

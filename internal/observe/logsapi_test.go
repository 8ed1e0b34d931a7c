package observe_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
)

// TestLogsAPI sends lines to a real log store (bin/victoria-logs) through the hub's log API as
// the API server forwards them: each line gets its agent's cluster and region whatever it says,
// a cluster past its rate is told to wait while another's lines go in at once, only agents
// send, and a query the store refuses comes back as a Status with the store's reason.
func TestLogsAPI(t *testing.T) {
	t.Parallel()
	storeURL := hubtest.LogStore(t)

	// The API server's front-proxy client certificate, as the hub makes it.
	dir := t.TempDir()
	ca, err := kubeproc.LoadOrCreateCA(dir, "front-proxy-ca")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.LoadOrIssue(dir, kubeproc.CertRequest{Name: "front-proxy-client", CommonName: "front-proxy"})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(kp.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	api := &observe.QueryAPI{
		Store: func() *url.URL { return nil }, FrontProxyCA: pool, FrontProxyNames: []string{"front-proxy"},
		LogStore: func() *url.URL { return storeURL }, LogLimit: &observe.LogLimiter{Rate: 1000, Burst: 4000},
		ClusterLabels: func(c string) (map[string]string, bool) {
			return map[string]string{"cluster": c, "region": "r-" + c}, c == "a" || c == "b"
		},
		Log: slog.New(slog.DiscardHandler),
	}
	h := api.Handler()
	do := func(method, path, user, body string, proxied bool) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(context.Background(), method, path, strings.NewReader(body))
		if proxied {
			req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		}
		if user != "" {
			req.Header.Set("X-Remote-User", user)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	agent := func(c string) string { return "system:serviceaccount:convoy-cluster-" + c + ":agent-1" }
	line := func(msg string, pad int) string {
		return `{"_time":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","_msg":"` + msg + strings.Repeat(" ", pad) +
			`","cluster":"forged","kubernetes.pod_namespace":"demo","kubernetes.pod_name":"web-1","kubernetes.container_name":"web"}` + "\n"
	}

	if rec := do(http.MethodPost, v1alpha1.LogsInsertPath, agent("a"), line("hello from a", 0), true); rec.Code/100 != 2 {
		t.Fatalf("an agent's lines: %d %s", rec.Code, rec.Body)
	}
	// Cluster a floods: past its burst it is told to wait; b's lines go in meanwhile.
	var refused *httptest.ResponseRecorder
	for i := range 4 {
		if rec := do(http.MethodPost, v1alpha1.LogsInsertPath, agent("a"), line("flood "+strconv.Itoa(i), 1500), true); rec.Code == http.StatusTooManyRequests {
			refused = rec
			break
		}
	}
	if refused == nil {
		t.Fatal("cluster a sent 6,000 bytes at once, past its burst of 4,000, and was not refused")
	}
	if refused.Header().Get("Retry-After") == "" || !strings.Contains(refused.Body.String(), "cluster a sends more logs than the hub takes") {
		t.Errorf("the refusal: %s %s", refused.Header(), refused.Body)
	}
	if rec := do(http.MethodPost, v1alpha1.LogsInsertPath, agent("b"), line("hello from b", 1500), true); rec.Code/100 != 2 {
		t.Errorf("cluster b while a floods: %d %s", rec.Code, rec.Body)
	}
	for name, tc := range map[string]struct {
		user    string
		proxied bool
		code    int
	}{
		"not through the API server":      {user: agent("a"), code: http.StatusUnauthorized},
		"a person":                        {user: "alice", proxied: true, code: http.StatusForbidden},
		"a cluster the hub does not know": {user: agent("c"), proxied: true, code: http.StatusServiceUnavailable},
	} {
		if rec := do(http.MethodPost, v1alpha1.LogsInsertPath, tc.user, line("x", 0), tc.proxied); rec.Code != tc.code {
			t.Errorf("%s: %d %s, want %d", name, rec.Code, rec.Body, tc.code)
		}
	}

	// A container that logs a field of the collector's own (vlagent, for one, keeps both): the first,
	// the collector's, stays, and the store takes the line (a repeated stream field made it exit).
	dup := `{"_time":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","_msg":"hello twice","kubernetes.pod_namespace":"demo","kubernetes.pod_name":"web-2",` +
		`"kubernetes.container_name":"web","kubernetes.pod_name":"forged"}` + "\n"
	if rec := do(http.MethodPost, v1alpha1.LogsInsertPath, agent("b"), dup, true); rec.Code/100 != 2 {
		t.Fatalf("a line with a repeated field: %d %s", rec.Code, rec.Body)
	}

	// Both clusters' lines, labelled by the hub.
	q := url.Values{"query": {`_msg:hello | fields cluster, region, kubernetes.pod_name, _msg`}}.Encode()
	hubtest.Eventually(t, "both clusters' lines in the store", 30*time.Second, func() (bool, error) {
		rec := do(http.MethodGet, v1alpha1.LogsPrefix+"/select/logsql/query?"+q, "alice", "", true)
		got := rec.Body.String()
		for _, want := range []string{`"cluster":"a","region":"r-a"`, `"cluster":"b","region":"r-b"`, `"kubernetes.pod_name":"web-2","_msg":"hello twice"`} {
			if !strings.Contains(got, want) {
				return false, fmt.Errorf("%d %s", rec.Code, got)
			}
		}
		if strings.Contains(got, "forged") {
			return false, fmt.Errorf("a line kept the cluster it named: %s", got)
		}
		return true, nil
	})
	rec := do(http.MethodGet, v1alpha1.LogsPrefix+"/select/logsql/query?query=%7C+nosuchpipe", "alice", "", true)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"kind":"Status"`) || !strings.Contains(rec.Body.String(), "cannot parse") {
		t.Errorf("an invalid query: %d %s, want a 400 Status with the store's reason", rec.Code, rec.Body)
	}
	if rec := do(http.MethodGet, v1alpha1.LogsPrefix+"/select/logsql/delete?query=*", "alice", "", true); rec.Code != http.StatusNotFound {
		t.Errorf("an endpoint the hub does not serve: %d %s", rec.Code, rec.Body)
	}
}

package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWeb(t *testing.T) {
	s := newServer(identity{cluster: "us-east", region: "us-east", zone: "a", node: "n1", pod: "web-1"})
	get := func(method, path string) (int, string) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("GET", "/"); code != 200 || !strings.Contains(body, "cluster us-east") || !strings.Contains(body, "pod web-1") {
		t.Errorf("GET / = %d %q", code, body)
	}
	if code, _ := get("GET", "/healthz"); code != 200 {
		t.Errorf("GET /healthz = %d", code)
	}
	if code, body := get("GET", "/slow?ms=1"); code != 200 || !strings.Contains(body, "slept 1 ms") {
		t.Errorf("GET /slow = %d %q", code, body)
	}
	if code, _ := get("GET", "/slow?ms=-1"); code != http.StatusBadRequest {
		t.Errorf("GET /slow?ms=-1 = %d, want 400", code)
	}
	if code, _ := get("POST", "/admin/error-rate?percent=100"); code != 200 {
		t.Errorf("POST error-rate = %d", code)
	}
	if code, _ := get("GET", "/"); code != 500 {
		t.Errorf("GET / at 100%% errors = %d, want 500", code)
	}
	get("POST", "/admin/error-rate?percent=0")
	if code, _ := get("GET", "/"); code != 200 {
		t.Errorf("GET / healed = %d", code)
	}
	// /call reaches Services by name only; a test server stands in for one.
	backend := httptest.NewServer(s)
	defer backend.Close()
	caller.Transport = &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, backend.Listener.Addr().String())
	}}
	if code, body := get("GET", "/call?url=http://web.demo.svc.cluster.local/"); code != 200 || !strings.Contains(body, "cluster us-east") {
		t.Errorf("GET /call = %d %q", code, body)
	}
	for _, bad := range []string{"file:///etc/passwd", "http://10.77.0.1:5000/v2/", "http://" + backend.Listener.Addr().String() + "/"} {
		if code, _ := get("GET", "/call?url="+bad); code != http.StatusBadRequest {
			t.Errorf("GET /call?url=%s = %d, want 400", bad, code)
		}
	}
	_, metrics := get("GET", "/metrics")
	for _, want := range []string{`http_requests_total{code="500",path="GET /{$}"} 1`, `http_requests_total{code="200",path="GET /{$}"} 3`, "http_request_duration_seconds_bucket"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
}

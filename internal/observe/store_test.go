package observe

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMetricsStoreArgs(t *testing.T) {
	for _, tc := range []struct {
		retention time.Duration
		want      string
	}{
		{0, "-retentionPeriod=15d"},
		{24 * time.Hour, "-retentionPeriod=1d"},
		{36 * time.Hour, "-retentionPeriod=2d"}, // whole days, rounded up: nothing kept shorter than asked
		{30 * 24 * time.Hour, "-retentionPeriod=30d"},
	} {
		args := MetricsStore{DataDir: "/d", Port: 8428, Retention: tc.retention}.Args()
		if !slices.Contains(args, tc.want) || !slices.Contains(args, "-httpListenAddr=127.0.0.1:8428") {
			t.Errorf("retention %s: %q, want %s on loopback", tc.retention, args, tc.want)
		}
	}
}

func TestScrapeConfig(t *testing.T) {
	raw, err := ScrapeConfig([]ScrapeTarget{{Job: "hub-apiserver", Address: "127.0.0.1:6443", CAFile: "ca.crt", CertFile: "c.crt", KeyFile: "c.key"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"job_name: hub-apiserver", "- 127.0.0.1:6443", "scheme: https", "metrics_path: /metrics", "scrape_interval: 15s", "cert_file: c.crt"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("scrape configuration lacks %q:\n%s", want, raw)
		}
	}
	if _, err := ScrapeConfig([]ScrapeTarget{{Job: "x", Address: "https://127.0.0.1:6443/metrics"}}); err == nil {
		t.Error("a URL for an address was taken")
	}
}

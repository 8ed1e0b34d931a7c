package hubtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Load is one client sending requests to the demo app (examples/web) one after another, 20 ms
// apart, as a fleet upgrade's tests and benchmark do through the edge.
type Load struct {
	cancel context.CancelFunc
	done   chan LoadResult
}

// LoadResult counts what a Load sent: its requests, the failures (a transport error, or an
// answer that is not the demo's page, with the time) and the latencies.
type LoadResult struct {
	Requests      int
	Failures      []string
	P50, P99, Max time.Duration
}

// StartLoad starts sending requests to url until Stop.
func StartLoad(url string) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel, done: make(chan LoadResult, 1)}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		var r LoadResult
		var lat []time.Duration
		for ctx.Err() == nil {
			t0 := time.Now()
			_, err := DemoPage(client, url)
			lat = append(lat, time.Since(t0))
			if err != nil {
				r.Failures = append(r.Failures, time.Now().Format(time.TimeOnly)+" "+err.Error())
			}
			time.Sleep(20 * time.Millisecond)
		}
		slices.Sort(lat)
		if n := len(lat); n > 0 {
			r.Requests, r.P50, r.P99, r.Max = n, lat[n/2], lat[n*99/100], lat[n-1]
		}
		l.done <- r
	}()
	return l
}

// Stop ends the load and says what it sent.
func (l *Load) Stop() LoadResult {
	l.cancel()
	return <-l.done
}

// DemoPage asks url for the demo app's page: an error unless it answers 200 with it.
func DemoPage(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(raw), "web: cluster ") {
		return "", fmt.Errorf("%d %q", resp.StatusCode, raw)
	}
	return string(raw), nil
}

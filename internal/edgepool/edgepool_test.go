package edgepool_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/edge"
	"github.com/convoy-dev/convoy/internal/edgepool"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// backend is an HTTP server on loopback that answers with its name.
func backend(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(l.Addr().String())
}

func pool(port int, health string, clusters map[string][]netip.AddrPort) edge.Pool {
	r := edge.Route{Name: "shop/web/0", Backend: edge.Backend{HealthPath: health}}
	// In name order, as edge.Resolve builds them: another order is another shape (a reload).
	for _, c := range slices.Sorted(maps.Keys(clusters)) {
		cs := edge.ClusterServers{Cluster: c}
		for _, a := range clusters[c] {
			cs.Servers = append(cs.Servers, edge.Server{Addr: a, Weight: 1})
		}
		r.Backend.Clusters = append(r.Backend.Clusters, cs)
	}
	return edge.Pool{Name: "shop/edge", Listeners: []edge.Listener{{Name: "web", Port: port, Protocol: edge.HTTP, Routes: []edge.Route{r}}}}
}

// TestUpdates runs a real HAProxy for a pool and changes its servers: within the slots through
// the Runtime API, beyond them by a reload, and a configuration HAProxy refuses not at all.
// Requests go on all along, and none fails.
func TestUpdates(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy is not installed (make deps installs it)")
	}
	ctx := context.Background()
	port, err := kubeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := kubeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	a, b := backend(t, "a"), backend(t, "b")
	more := []netip.AddrPort{backend(t, "c"), backend(t, "d"), backend(t, "e")}
	log := hubtest.Logger(t)
	dir := t.TempDir()
	inst, err := edgepool.Start(ctx, edgepool.Config{Name: "test", Dir: dir, Bind: "127.0.0.1", Metrics: fmt.Sprintf("127.0.0.1:%d", metrics), CheckInterval: 200 * time.Millisecond},
		pool(port, "/", map[string][]netip.AddrPort{"east": {a}}), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Stop(context.Background()) })

	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	// A connection per request: Go's client would quietly send a request again on a reused
	// connection that a reload closed, and hide a failure.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	get := func() (string, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("%s: %s", resp.Status, body)
		}
		return string(body), nil
	}
	// answered waits until the pool's answers, over many requests, are exactly want.
	answered := func(want ...string) {
		t.Helper()
		hubtest.Eventually(t, fmt.Sprintf("answers from %v", want), 20*time.Second, func() (bool, error) {
			seen := map[string]bool{}
			for range 40 {
				body, err := get()
				if err != nil {
					return false, err
				}
				seen[body] = true
			}
			for _, w := range want {
				if !seen[w] {
					return false, fmt.Errorf("answers %v", seen)
				}
			}
			return len(seen) == len(want), fmt.Errorf("answers %v", seen)
		})
	}
	answered("a")

	// Load all along: every request must succeed.
	var failed, sent atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if _, err := get(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}

	// b joins east, and a second cluster appears: a new cluster is a reload.
	res, err := inst.Update(ctx, pool(port, "/", map[string][]netip.AddrPort{"east": {a, b}, "west": {more[0]}}))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reloaded {
		t.Errorf("a new cluster: %+v, want a reload", res)
	}
	answered("a", "b", "c")

	// Within the slots: a leaves, d and e join west. No reload.
	res, err = inst.Update(ctx, pool(port, "/", map[string][]netip.AddrPort{"east": {b}, "west": more}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Reloaded || res.Commands == 0 {
		t.Errorf("servers within the slots: %+v, want Runtime API commands and no reload", res)
	}
	answered("b", "c", "d", "e")

	// The same servers with another health check: a reload, though no server moved.
	current := map[string][]netip.AddrPort{"east": {b}, "west": more}
	res, err = inst.Update(ctx, pool(port, "/healthz", current))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reloaded {
		t.Errorf("a changed health check: %+v, want a reload", res)
	}
	answered("b", "c", "d", "e")

	// A configuration HAProxy refuses (a frontend name with '@', which the pool's model lets
	// through) is not loaded, nor written for a restart; the pool keeps serving what it served.
	cfgBefore, _ := os.ReadFile(filepath.Join(dir, "haproxy.cfg"))
	refused := pool(port, "/healthz", current)
	refused.Listeners[0].Name = "web@2"
	if _, err = inst.Update(ctx, refused); !errors.Is(err, edgepool.ErrRefused) {
		t.Fatalf("a refused configuration: err = %v, want ErrRefused", err)
	}
	if cfgAfter, _ := os.ReadFile(filepath.Join(dir, "haproxy.cfg")); string(cfgAfter) != string(cfgBefore) {
		t.Error("a refused configuration was written where a restart would load it")
	}
	answered("b", "c", "d", "e")

	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed during the updates; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	t.Logf("%d requests during the updates, %d failed", sent.Load(), failed.Load())

	// HAProxy killed: its supervisor starts it again on the configuration as it is, servers
	// moved through the Runtime API included.
	pid := inst.Process().Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	hubtest.Eventually(t, "HAProxy started again", 20*time.Second, func() (bool, error) {
		st := inst.Process().Status()
		return st.Running && st.PID != pid, nil
	})
	answered("b", "c", "d", "e")

	// HAProxy's own exporter serves the pool's metrics.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `haproxy_backend_http_responses_total{proxy="be:shop:web:0"`) {
		t.Errorf("no per-backend responses in /metrics:\n%.2000s", body)
	}
}

// A pool's rate limit refuses what goes over it with 429 and lets the rest through, however
// long the excess lasts.
func TestRateLimit(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy is not installed (make deps installs it)")
	}
	port, err := kubeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := pool(port, "", map[string][]netip.AddrPort{"east": {backend(t, "a")}})
	p.Limits.RequestsPerSecond = 5
	inst, err := edgepool.Start(context.Background(), edgepool.Config{Name: "rate", Dir: t.TempDir(), Bind: "127.0.0.1"}, p, hubtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Stop(context.Background()) })
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	// Twenty requests a second for three seconds: each second lets some through.
	codes := map[int]map[int]int{} // second → status → count
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sec := int(time.Since(start) / time.Second)
		if codes[sec] == nil {
			codes[sec] = map[int]int{}
		}
		codes[sec][resp.StatusCode]++
		time.Sleep(50 * time.Millisecond)
	}
	refused := 0
	for sec := range 3 {
		if codes[sec][http.StatusOK] == 0 {
			t.Errorf("second %d: %v, want some requests let through", sec, codes[sec])
		}
		refused += codes[sec][http.StatusTooManyRequests]
	}
	if refused == 0 {
		t.Errorf("no request refused at twenty a second over a limit of five: %v", codes)
	}
}

// A TCP listener passes a connection's bytes to a server of its route and back.
func TestTCP(t *testing.T) {
	hubtest.RequireHAProxy(t)
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	port, err := kubeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := edge.Pool{Name: "shop/db", Listeners: []edge.Listener{{Name: "pg", Port: port, Protocol: edge.TCP, Routes: []edge.Route{{Name: "shop/pg/0/pg",
		Backend: edge.Backend{Clusters: []edge.ClusterServers{{Cluster: "east", Servers: []edge.Server{{Addr: netip.MustParseAddrPort(echo.Addr().String()), Weight: 1}}}}}}}}}}
	inst, err := edgepool.Start(context.Background(), edgepool.Config{Name: "tcp", Dir: t.TempDir(), Bind: "127.0.0.1"}, p, hubtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Stop(context.Background()) })
	hubtest.Eventually(t, "a round trip through the TCP listener", 20*time.Second, func() (bool, error) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
		if err != nil {
			return false, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return false, err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return line == "ping\n", fmt.Errorf("%q %v", line, err)
	})
}

package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/version"
)

// runningHub is `convoy hub` started by a benchmark.
type runningHub struct {
	cmd    *exec.Cmd
	health string
	ready  time.Duration
}

func buildConvoy(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "convoy")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/convoy").CombinedOutput(); err != nil {
		b.Fatalf("build convoy: %v\n%s", err, out)
	}
	return bin
}

// startHub runs `convoy hub` on dataDir and returns once /readyz answers 200, with the time
// from exec to ready.
func startHub(b *testing.B, convoy, dataDir string, apiPort int) *runningHub {
	b.Helper()
	healthPort, _ := kubeproc.FreePort()
	h := &runningHub{health: fmt.Sprintf("127.0.0.1:%d", healthPort)}
	h.cmd = exec.Command(convoy, "hub", "--data-dir", dataDir, "--apiserver-port", fmt.Sprint(apiPort), "--health-addr", h.health, "--log-level", "warn")
	h.cmd.Env = append(os.Environ(), "CONVOY_BIN_DIR="+hubtest.BinDir(b))
	h.cmd.Stdout, h.cmd.Stderr = nil, os.Stderr
	start := time.Now()
	if err := h.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	for {
		if resp, err := http.Get("http://" + h.health + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				h.ready = time.Since(start)
				return h
			}
		}
		if time.Since(start) > 2*time.Minute {
			h.cmd.Process.Kill()
			b.Fatal("hub not ready within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *runningHub) status(b *testing.B) hub.Status {
	resp, err := http.Get("http://" + h.health + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var st hub.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		b.Fatal(err)
	}
	return st
}

func (h *runningHub) stop() {
	h.cmd.Process.Signal(syscall.SIGTERM)
	h.cmd.Wait()
}

// BenchmarkHub measures the hub's time from `convoy hub` to ready, on a new data dir (which
// includes making the PKI and installing the CRDs) and on an existing one, and its resident
// memory and CPU use while idle.
func BenchmarkHub(b *testing.B) {
	convoy := buildConvoy(b)
	const runs = 5
	var cold, warm []time.Duration
	for range runs {
		dir := b.TempDir()
		port, _ := kubeproc.FreePort()
		h := startHub(b, convoy, dir, port)
		cold = append(cold, h.ready)
		h.stop()
		h = startHub(b, convoy, dir, port)
		warm = append(warm, h.ready)
		h.stop()
	}

	port, _ := kubeproc.FreePort()
	h := startHub(b, convoy, b.TempDir(), port)
	defer h.stop()
	const settle, window = 20 * time.Second, 30 * time.Second
	time.Sleep(settle)
	pids := map[string]int{"convoy hub": h.cmd.Process.Pid}
	for _, c := range h.status(b).Children {
		pids[c.Name] = c.PID
	}
	cpu0 := map[string]time.Duration{}
	for name, pid := range pids {
		cpu0[name], _ = CPUTime(pid)
	}
	time.Sleep(window)

	fmt.Printf("\nHub benchmark (Kubernetes %s, kine on SQLite)\n", version.Kubernetes)
	fmt.Printf("machine: %s\n", Machine())
	fmt.Printf("start to ready, new data dir:      median %s  (runs: %v)\n", Median(cold).Round(10*time.Millisecond), round(cold))
	fmt.Printf("start to ready, existing data dir: median %s  (runs: %v)\n", Median(warm).Round(10*time.Millisecond), round(warm))
	fmt.Printf("idle, measured over %s after %s:\n", window, settle)
	var totalRSS int64
	var totalCPU time.Duration
	for _, name := range []string{"convoy hub", kubeproc.Kine, kubeproc.KubeAPIServer, kubeproc.KubeControllerManager} {
		pid := pids[name]
		rss, _ := RSS(pid)
		cpu, _ := CPUTime(pid)
		used := cpu - cpu0[name]
		totalRSS += rss
		totalCPU += used
		fmt.Printf("  %-24s rss %8s   cpu %5.0f millicores\n", name, MiB(rss), millicores(used, window))
	}
	fmt.Printf("  %-24s rss %8s   cpu %5.0f millicores\n", "total", MiB(totalRSS), millicores(totalCPU, window))

	b.ReportMetric(Median(cold).Seconds(), "s-ready-new")
	b.ReportMetric(Median(warm).Seconds(), "s-ready-existing")
	b.ReportMetric(float64(totalRSS)/(1<<20), "MiB-idle-rss")
	b.ReportMetric(millicores(totalCPU, window), "mcores-idle")
}

func millicores(used, over time.Duration) float64 { return float64(used) / float64(over) * 1000 }

func round(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

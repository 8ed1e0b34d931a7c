package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/version"
)

// BenchmarkHub measures the hub's time from `convoy hub` to ready, on a new data dir (which
// includes making the PKI and installing the CRDs) and on an existing one, and its resident
// memory and CPU use while idle.
func BenchmarkHub(b *testing.B) {
	const runs = 5
	var cold, warm []time.Duration
	for range runs {
		h := hubtest.StartProcess(b, hubtest.ProcessOptions{Args: []string{"--log-level", "warn"}})
		cold = append(cold, h.Ready)
		h.Stop()
		h.Start()
		warm = append(warm, h.Ready)
		h.Stop()
	}

	h := hubtest.StartProcess(b, hubtest.ProcessOptions{Args: []string{"--log-level", "warn"}})
	defer h.Stop()
	const settle, window = 20 * time.Second, 30 * time.Second
	time.Sleep(settle)
	pids := map[string]int{"convoy hub": h.PID()}
	for _, c := range h.Status().Children {
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

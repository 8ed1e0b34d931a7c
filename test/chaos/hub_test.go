//go:build chaos

// Package chaos holds Convoy's fault tests, run by `make test-chaos`: the hub killed with
// SIGKILL in the middle of rollouts, the hub down for a minute under a hundred clusters, an
// agent cut off from the hub, invalid input in bulk, and the isolation of agents from each
// other. They run the real hub (its API server and kine from bin/) and simulated members
// (internal/sim, each running the real agent). Nothing imports this package.
package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/sim"
)

func init() { ctrllog.SetLogger(logr.Discard()) }

// hubProcess is `convoy hub` run as its own process, so that a test can kill it with SIGKILL
// and start it again on the same data dir and port.
type hubProcess struct {
	t       *testing.T
	convoy  string
	dataDir string
	port    int
	health  string
	logFile string
	cmd     *exec.Cmd

	Config *rest.Config
	Client client.Client
	CS     kubernetes.Interface
}

func startHubProcess(t *testing.T) *hubProcess {
	t.Helper()
	port, err := kubeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	healthPort, err := kubeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	h := &hubProcess{t: t, convoy: hubtest.ConvoyBinary(t), dataDir: t.TempDir(), port: port,
		health: fmt.Sprintf("127.0.0.1:%d", healthPort), logFile: filepath.Join(t.TempDir(), "hub.log")}
	h.start()
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			raw, _ := os.ReadFile(h.logFile)
			lines := strings.Split(string(raw), "\n")
			t.Logf("hub log (last lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	return h
}

// start runs the hub and waits until it is ready.
func (h *hubProcess) start() {
	h.t.Helper()
	out, err := os.OpenFile(h.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	defer out.Close()
	h.cmd = exec.Command(h.convoy, "hub", "--data-dir", h.dataDir, "--apiserver-port", fmt.Sprint(h.port), "--health-addr", h.health, "--log-level", "warn")
	h.cmd.Env = append(os.Environ(), "CONVOY_BIN_DIR="+hubtest.BinDir(h.t))
	h.cmd.Stdout, h.cmd.Stderr = out, out
	// Should the test binary die (a timeout panics it), the hub goes with it.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if resp, err := http.Get("http://" + h.health + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatal("the hub is not ready within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h.Config == nil {
		cfg, err := clientcmd.BuildConfigFromFlags("", hub.Layout{Dir: h.dataDir}.Kubeconfig())
		if err != nil {
			h.t.Fatal(err)
		}
		cfg.QPS, cfg.Burst = 500, 1000
		if len(cfg.CAData) == 0 && cfg.CAFile != "" {
			if cfg.CAData, err = os.ReadFile(cfg.CAFile); err != nil {
				h.t.Fatal(err)
			}
			cfg.CAFile = ""
		}
		h.Config = cfg
		if h.Client, err = client.New(cfg, client.Options{Scheme: hubtest.Scheme()}); err != nil {
			h.t.Fatal(err)
		}
		h.CS = kubernetes.NewForConfigOrDie(cfg)
	}
}

// kill sends SIGKILL to the hub and waits for it and its children to go.
func (h *hubProcess) kill() {
	h.t.Helper()
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
	h.waitPortFree()
}

// stop stops the hub with SIGTERM.
func (h *hubProcess) stop() {
	if h.cmd == nil || h.cmd.ProcessState != nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = h.cmd.Process.Kill()
		<-done
	}
}

// waitPortFree waits until the API server of a killed hub (which its kernel-delivered
// parent-death signal stops) has let go of its port.
func (h *hubProcess) waitPortFree() {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if kubeproc.PortFree(h.port) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("port %d is still taken 30s after the hub was killed", h.port)
}

// fleet starts a fleet of simulated clusters against the hub.
func (h *hubProcess) fleet(t *testing.T) *sim.Fleet {
	f := sim.NewFleet(sim.Options{HubURL: h.Config.Host, HubCA: h.Config.CAData, StateDir: t.TempDir(),
		AvailableAfter: 100 * time.Millisecond, Version: "chaos"})
	t.Cleanup(f.StopAll)
	return f
}

// eventually polls cond every 200 ms until it holds, or fails the test after timeout.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		var ok bool
		if ok, err = cond(); ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (last: %v)", what, timeout, err)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var _ = context.Background

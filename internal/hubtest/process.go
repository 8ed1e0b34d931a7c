package hubtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/internal/edgepool"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/provider/local"
)

// ProcessOptions say how to run `convoy hub`; every field has a default.
type ProcessOptions struct {
	// Convoy is the binary; empty means ConvoyBinary.
	Convoy string
	// DataDir is the hub's data dir; empty means a new one in tb.TempDir().
	DataDir string
	// Port is the API server's port; zero means a free one.
	Port int
	// Args are more flags for `convoy hub`, such as "--log-level", "warn".
	Args []string
}

// Process is `convoy hub` run as its own process, as a user runs it, so that a test can
// signal it, kill it with SIGKILL and start it again on the same data dir and port, and a
// benchmark can measure it apart from itself. When the test ends it is stopped, with the local
// clusters it started, and what it printed is logged if the test failed.
type Process struct {
	DataDir string
	Port    int
	// Health is the address of the hub's health server (/readyz, /status).
	Health string
	// Ready is how long the last Start took until the hub was ready.
	Ready time.Duration

	tb     testing.TB
	convoy string
	args   []string
	out    *SyncBuffer
	cmd    *exec.Cmd
	exited chan error
	config *rest.Config
}

// StartProcess starts `convoy hub` and waits until it is ready.
func StartProcess(tb testing.TB, o ProcessOptions) *Process {
	tb.Helper()
	p := &Process{tb: tb, convoy: o.Convoy, DataDir: o.DataDir, Port: o.Port, args: o.Args, out: &SyncBuffer{}}
	if p.convoy == "" {
		p.convoy = ConvoyBinary(tb)
	}
	if p.DataDir == "" {
		p.DataDir = tb.TempDir()
	}
	var err error
	if p.Port == 0 {
		if p.Port, err = kubeproc.FreePort(); err != nil {
			tb.Fatal(err)
		}
	}
	healthPort, err := kubeproc.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	p.Health = fmt.Sprintf("127.0.0.1:%d", healthPort)
	tb.Cleanup(func() {
		p.Stop()
		// Local clusters outlive their hub on purpose; a test's must not outlive the test.
		if _, err := local.StopAll(hub.Layout{Dir: p.DataDir}.Clusters(), slog.New(slog.DiscardHandler)); err != nil {
			tb.Errorf("stop local clusters: %v", err)
		}
		if err := edgepool.StopAll(hub.Layout{Dir: p.DataDir}.Edge(), slog.New(slog.DiscardHandler)); err != nil {
			tb.Errorf("stop edge pools: %v", err)
		}
		if tb.Failed() {
			lines := strings.Split(p.out.String(), "\n")
			tb.Logf("convoy hub output (last lines):\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	p.Start()
	return p
}

// Start runs the hub (again, after Kill or Stop) and waits until it is ready.
func (p *Process) Start() {
	p.tb.Helper()
	if p.cmd != nil && p.Running() {
		p.tb.Fatal("hubtest: Start of a hub process that still runs; Stop or Kill it first")
	}
	args := append([]string{"hub", "--data-dir", p.DataDir, "--apiserver-port", fmt.Sprint(p.Port), "--health-addr", p.Health}, p.args...)
	cmd := exec.Command(p.convoy, args...)
	cmd.Env = append(os.Environ(), "CONVOY_BIN_DIR="+BinDir(p.tb))
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// Should the test binary die (a timeout panics it), the hub goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		p.tb.Fatal(err)
	}
	exited := make(chan error, 1)
	p.cmd, p.exited = cmd, exited
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case err := <-exited:
			exited <- err
			p.tb.Fatalf("convoy hub exited before it was ready: %v\n%s", err, p.out.String())
		default:
		}
		if resp, err := http.Get("http://" + p.Health + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.Ready = time.Since(start)
				return
			}
		}
		if time.Since(start) > 2*time.Minute {
			p.tb.Fatalf("convoy hub not ready within 2 minutes\n%s", p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Running says whether the process has not exited.
func (p *Process) Running() bool {
	select {
	case err := <-p.exited:
		p.exited <- err
		return false
	default:
		return true
	}
}

// PID is the hub process's.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to the hub process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to a minute for the hub to exit, and returns how it exited.
func (p *Process) Wait() error {
	p.tb.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(time.Minute):
		p.tb.Fatal("convoy hub did not exit within a minute")
		return nil
	}
}

// Kill sends SIGKILL to the hub and waits until it and its API server are gone (its
// children stop on their parent's death).
func (p *Process) Kill() {
	p.tb.Helper()
	_ = p.cmd.Process.Kill()
	_ = p.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for !kubeproc.PortFree(p.Port) {
		if time.Now().After(deadline) {
			p.tb.Fatalf("port %d is still taken 30s after the hub was killed", p.Port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the hub with SIGTERM, and with SIGKILL should it not exit within a minute.
func (p *Process) Stop() {
	if p.cmd == nil || !p.Running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		err := <-p.exited
		p.exited <- err
	}
}

// Output is everything the hub printed, over all its starts.
func (p *Process) Output() string { return p.out.String() }

// Status is what the hub's /status says: its phase and its children.
func (p *Process) Status() hub.Status {
	p.tb.Helper()
	resp, err := http.Get("http://" + p.Health + "/status")
	if err != nil {
		p.tb.Fatal(err)
	}
	defer resp.Body.Close()
	var st hub.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		p.tb.Fatal(err)
	}
	return st
}

// Config is an admin client configuration for the hub, from its kubeconfig, with room for
// many requests a second.
func (p *Process) Config() *rest.Config {
	p.tb.Helper()
	if p.config == nil {
		cfg, err := clientcmd.BuildConfigFromFlags("", hub.Layout{Dir: p.DataDir}.Kubeconfig())
		if err != nil {
			p.tb.Fatal(err)
		}
		cfg.QPS, cfg.Burst = 500, 1000
		if len(cfg.CAData) == 0 && cfg.CAFile != "" {
			if cfg.CAData, err = os.ReadFile(cfg.CAFile); err != nil {
				p.tb.Fatal(err)
			}
			cfg.CAFile = ""
		}
		p.config = cfg
	}
	return rest.CopyConfig(p.config)
}

// Client is an admin client that knows Convoy's types.
func (p *Process) Client() client.Client {
	p.tb.Helper()
	c, err := client.New(p.Config(), client.Options{Scheme: Scheme()})
	if err != nil {
		p.tb.Fatal(err)
	}
	return c
}

// Clientset is an admin clientset.
func (p *Process) Clientset() kubernetes.Interface {
	p.tb.Helper()
	cs, err := kubernetes.NewForConfig(p.Config())
	if err != nil {
		p.tb.Fatal(err)
	}
	return cs
}

// Parallel runs f(0), ..., f(n-1) on workers goroutines and returns when all have returned.
func Parallel(workers, n int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// Eventually polls cond every 200 ms until it holds, and fails the test with cond's last
// error when it does not within timeout.
func Eventually(tb testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		var ok bool
		if ok, err = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Must fails the test on an error.
func Must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// SyncBuffer is a bytes.Buffer that a process's output and a test may use at once.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ClosedPort returns a port on 127.0.0.1 that refuses connections until the test ends. A
// socket holds it bound without listening, so that no other process (tests run in parallel)
// can take it meanwhile, as one could take a port that was merely free a moment ago.
func ClosedPort(tb testing.TB) int {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

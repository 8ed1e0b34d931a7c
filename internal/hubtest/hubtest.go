// Package hubtest starts a real hub for tests: the upstream kube-apiserver and kine from
// bin/, on free loopback ports, with its data in t.TempDir(). It stops the hub when the test
// ends. Tests of any package may import it; production code must not.
package hubtest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/edgepool"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/provider/local"
)

// Hub is a hub started for a test.
type Hub struct {
	*hub.Hub
	// Options started the hub; Restart reuses them.
	Options hub.Options
	// Config is an admin client configuration.
	Config *rest.Config
	// Client is an admin client that knows Convoy's types.
	Client client.Client

	t testing.TB
}

// Start starts a hub and waits until it is ready. Each option may change the defaults: a new
// data dir in t.TempDir(), SQLite, a free API server port, a free health port.
func Start(t testing.TB, opts ...func(*hub.Options)) *Hub {
	t.Helper()
	setGlobalLoggers()
	port, err := kubeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// The delivery stream's port is reserved too, so that no other test takes it while this
	// hub restarts.
	deliveryPort, err := kubeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	o := hub.Options{
		DataDir:       t.TempDir(),
		BinDir:        BinDir(t),
		APIServerPort: port,
		DeliveryPort:  deliveryPort,
		HealthAddr:    "127.0.0.1:0",
		ConvoyBinary:  ConvoyBinary(t),
		SkipTemplates: true,
		// No test of an in-process hub runs an agent from Convoy's image.
		SkipConvoyImage: true,
		// Nor its log collector, which comes from that image: the log store and the
		// collectors are off unless a test turns them on (LogsRetention 0) with the image.
		LogsRetention: -1,
		// Each start-up step may take twice the default: the suite runs its hubs, fleets and
		// end-to-end tests side by side on two cores, where an API server on etcd once took
		// more than a minute to be ready. Waiting longer changes no result, only how soon a
		// broken start is reported.
		StepTimeout: 2 * time.Minute,
		// The API server's port is this hub's alone, and so is this range of edge addresses.
		EdgeAddresses: netip.PrefixFrom(netip.AddrFrom4([4]byte{127, byte(port >> 8), byte(port), 0}), 24),
		Log:           Logger(t),
	}
	for _, f := range opts {
		f(&o)
	}
	h := &Hub{Options: o, t: t}
	h.start()
	t.Cleanup(func() {
		h.Stop(context.Background())
		// Local clusters outlive their hub on purpose; a test's must not outlive the test.
		if _, err := local.StopAll(hub.Layout{Dir: o.DataDir}.Clusters(), o.Log); err != nil {
			t.Errorf("stop local clusters: %v", err)
		}
		// So do its edge pools' HAProxy instances.
		if err := edgepool.StopAll(hub.Layout{Dir: o.DataDir}.Edge(), o.Log); err != nil {
			t.Errorf("stop edge pools: %v", err)
		}
	})
	return h
}

func (h *Hub) start() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hb, err := hub.Start(ctx, h.Options)
	if err != nil {
		h.t.Fatalf("start hub: %v", err)
	}
	h.Hub = hb
	h.Config = hb.AdminConfig()
	h.Client, err = client.New(h.Config, client.Options{Scheme: Scheme()})
	if err != nil {
		h.t.Fatalf("hub client: %v", err)
	}
}

// Restart stops the hub and starts it again on the same data dir and port.
func (h *Hub) Restart() {
	h.t.Helper()
	h.Stop(context.Background())
	h.start()
}

var globalLoggers sync.Once

// setGlobalLoggers sends what controller-runtime logs outside a manager (its global logger)
// to stderr, warnings and worse only; without it controller-runtime complains on every test.
func setGlobalLoggers() {
	globalLoggers.Do(func() {
		ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	})
}

// Scheme knows the built-in types, Convoy's and the Gateway API's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := gatewayv1.Install(s); err != nil {
		panic(err)
	}
	return s
}

var (
	convoyOnce sync.Once
	convoyPath string
	convoyErr  error
)

// ConvoyBinary builds the convoy executable from this checkout, once per test process, into
// bin/.test/convoy, and returns its path. The hub runs local clusters with it.
func ConvoyBinary(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	convoyOnce.Do(func() {
		dir := filepath.Join(root, "bin", ".test")
		if convoyErr = os.MkdirAll(dir, 0o755); convoyErr != nil {
			return
		}
		// Several test processes may build at once: each builds its own file and renames it
		// into place, which is atomic, and a running copy keeps its inode.
		tmp, err := os.CreateTemp(dir, "convoy-*")
		if err != nil {
			convoyErr = err
			return
		}
		tmp.Close()
		cmd := exec.Command("go", "build", "-o", tmp.Name(), "./cmd/convoy")
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0") // static, as make builds it
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp.Name())
			convoyErr = fmt.Errorf("build convoy: %v\n%s", err, out)
			return
		}
		convoyPath = filepath.Join(dir, "convoy")
		convoyErr = os.Rename(tmp.Name(), convoyPath)
	})
	if convoyErr != nil {
		t.Fatal(convoyErr)
	}
	return convoyPath
}

// RepoRoot is the root of the Convoy checkout the test runs in.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		raw, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(raw, []byte("module github.com/convoy-dev/convoy\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find the Convoy checkout (go.mod) above the working directory")
		}
		dir = parent
	}
}

// BinDir is $CONVOY_BIN_DIR, or bin/ of the checkout. It fails the test, saying what to run,
// when kube-apiserver is not there.
func BinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CONVOY_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "bin")
	}
	for _, name := range []string{kubeproc.KubeAPIServer, kubeproc.KubeControllerManager, kubeproc.Kine} {
		if _, err := (kubeproc.Binaries{Dir: dir}).Path(name); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Logger sends structured logs to t.Log, and drops them once the test has ended.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	level := slog.LevelInfo
	if os.Getenv("CONVOY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

//go:build chaos

// Package chaos holds Convoy's fault tests, run by `make test-chaos`: the hub killed with
// SIGKILL in the middle of rollouts, the hub down for a minute under a hundred clusters, the
// hub restarted under a thousand clusters reconnecting at once, an agent cut off from the hub, invalid input in bulk, and the isolation of agents from each
// other. They run the real hub (its API server and kine from bin/) and simulated members
// (internal/sim, each running the real agent). Nothing imports this package.
package chaos

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/sim"
)

func init() { ctrllog.SetLogger(logr.Discard()) }

// hubProcess is `convoy hub` run as its own process (hubtest.Process: the tests kill it with
// SIGKILL and start it again on the same data dir and port), with the clients the tests use.
type hubProcess struct {
	*hubtest.Process
	Config *rest.Config
	Client client.Client
	CS     kubernetes.Interface
}

func startHubProcess(t *testing.T) *hubProcess {
	t.Helper()
	p := hubtest.StartProcess(t, hubtest.ProcessOptions{Args: []string{"--log-level", "warn"}})
	return &hubProcess{Process: p, Config: p.Config(), Client: p.Client(), CS: p.Clientset()}
}

// fleet starts a fleet of simulated clusters against the hub.
func (h *hubProcess) fleet(t *testing.T) *sim.Fleet { return h.fleetWithLog(t, nil) }

// fleetWithLog is a simulated fleet whose agents log to log.
func (h *hubProcess) fleetWithLog(t *testing.T, log *slog.Logger) *sim.Fleet {
	f := sim.NewFleet(sim.Options{HubURL: h.Config.Host, HubCA: h.Config.CAData, StateDir: t.TempDir(),
		AvailableAfter: 100 * time.Millisecond, Version: "chaos", Log: log})
	t.Cleanup(f.StopAll)
	return f
}

// logCounter is a slog.Handler that counts messages by their beginning and the cluster they
// are about, so that a test can wait for every agent to have said something.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]map[string]int       // message -> cluster -> count
	lastAt map[string]map[string]time.Time // message -> cluster -> when it was last said
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }

func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	cluster := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "cluster" {
			cluster = a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = map[string]map[string]int{}
	}
	if l.counts[r.Message] == nil {
		l.counts[r.Message] = map[string]int{}
	}
	l.counts[r.Message][cluster]++
	if l.lastAt == nil {
		l.lastAt = map[string]map[string]time.Time{}
	}
	if l.lastAt[r.Message] == nil {
		l.lastAt[r.Message] = map[string]time.Time{}
	}
	l.lastAt[r.Message][cluster] = r.Time
	return nil
}

// last returns, per cluster, when a message beginning with prefix was last said.
func (l *logCounter) last(prefix string) map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]time.Time{}
	for msg, by := range l.lastAt {
		if strings.HasPrefix(msg, prefix) {
			for c, at := range by {
				if at.After(out[c]) {
					out[c] = at
				}
			}
		}
	}
	return out
}

func (l *logCounter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logShared{l, slices.Clone(attrs)}
}

func (l *logCounter) WithGroup(string) slog.Handler { return l }

// count returns, per cluster, how many messages began with prefix.
func (l *logCounter) count(prefix string) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for msg, by := range l.counts {
		if strings.HasPrefix(msg, prefix) {
			for c, n := range by {
				out[c] += n
			}
		}
	}
	return out
}

// logShared is a logCounter with attributes of its own, counting into the same counter.
type logShared struct {
	*logCounter
	attrs []slog.Attr
}

func (l *logShared) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(l.attrs...)
	return l.logCounter.Handle(ctx, r)
}

func (l *logShared) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logShared{l.logCounter, append(slices.Clone(l.attrs), attrs...)}
}

var (
	eventually = hubtest.Eventually
	must       = hubtest.Must
)

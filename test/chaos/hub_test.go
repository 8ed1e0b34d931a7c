//go:build chaos

// Package chaos holds Convoy's fault tests, run by `make test-chaos`: the hub killed with
// SIGKILL in the middle of rollouts, the hub down for a minute under a hundred clusters, an
// agent cut off from the hub, invalid input in bulk, and the isolation of agents from each
// other. They run the real hub (its API server and kine from bin/) and simulated members
// (internal/sim, each running the real agent). Nothing imports this package.
package chaos

import (
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
func (h *hubProcess) fleet(t *testing.T) *sim.Fleet {
	f := sim.NewFleet(sim.Options{HubURL: h.Config.Host, HubCA: h.Config.CAData, StateDir: t.TempDir(),
		AvailableAfter: 100 * time.Millisecond, Version: "chaos"})
	t.Cleanup(f.StopAll)
	return f
}

var (
	eventually = hubtest.Eventually
	must       = hubtest.Must
)

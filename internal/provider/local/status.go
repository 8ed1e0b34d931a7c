package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/provider"
)

// crashLoopRestarts is how many restarts of a component, while the cluster is not ready,
// make the cluster Failed.
const crashLoopRestarts = 3

// Status reports the runtime's state and what the cluster's API server says.
func (p *Provider) Status(ctx context.Context, c *v1alpha1.Cluster) (provider.Status, error) {
	d := p.dir(c.Name)
	var st provider.Status
	if !exists(d.config()) {
		return st, nil
	}
	st.Exists = true
	_, st.Running = kubeproc.LockHolder(d.lock())
	if !st.Running {
		st.Progress = "runtime not running"
		return st, nil
	}
	var rs RuntimeStatus
	if err := readJSON(d.status(), &rs); err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, err
	}
	st.Progress = rs.Phase
	st.Upgrading, st.Blocked = rs.Upgrading, rs.Blocked
	var cfg config
	if err := readJSON(d.config(), &cfg); err == nil && rs.Version != "" && cfg.KubernetesVersion != rs.Version && st.Upgrading == "" {
		// Upgrade wrote the version, and the runtime has not taken it up yet.
		st.Upgrading = fmt.Sprintf("upgrading the control plane from %s to %s", rs.Version, cfg.KubernetesVersion)
	}
	switch {
	case rs.NodesError != "":
		st.Progress = "nodes: " + rs.NodesError
	case rs.AddonsError != "":
		st.Progress = "add-ons: " + rs.AddonsError
	}
	m, err := p.client(c.Name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return st, nil // the runtime has not written the kubeconfig yet
		}
		return st, err
	}
	st.Endpoint = m.config.Host
	observeErr := provider.Observe(ctx, m.client, &st)
	if !st.APIReady {
		st.Failure = crashLoop(rs)
		if observeErr != nil && st.Progress == "running" {
			st.Progress = observeErr.Error()
		}
	}
	return st, nil
}

// crashLoop explains a component that keeps crashing, with the last lines of its log.
func crashLoop(rs RuntimeStatus) string {
	for _, c := range rs.Components {
		if c.Restarts >= crashLoopRestarts {
			reason := lastLines(c.ExitTail, 2)
			if reason == "" {
				reason = c.LastExit
			}
			return fmt.Sprintf("%s keeps crashing (%d restarts, last exit: %s): %s", c.Name, c.Restarts, c.LastExit, strings.ReplaceAll(reason, "\n", " | "))
		}
	}
	return ""
}

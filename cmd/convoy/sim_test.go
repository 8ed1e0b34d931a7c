package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
)

// TestAgentSimulate runs `convoy agent --simulate 3` against a hub: three clusters registered
// through their agents become Ready, an interrupt stops the agents cleanly, and a second run
// on the same state dir takes the same clusters over. A local cluster's name is refused.
func TestAgentSimulate(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	ctx := context.Background()
	admin := f.Client()
	stateDir := t.TempDir()
	start := func() (*exec.Cmd, *hubtest.SyncBuffer) {
		cmd := exec.Command(convoyBin, "agent", "--simulate", "3", "--name-prefix", "demo", "--labels", "fleet=demo", "--state-dir", stateDir)
		cmd.Env = append(os.Environ(), f.env...)
		out := &hubtest.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, out
	}
	ready := func(what string) {
		eventually(t, what, 2*time.Minute, func() (bool, error) {
			var list v1alpha1.ClusterList
			if err := admin.List(ctx, &list, client.MatchingLabels{"fleet": "demo"}); err != nil {
				return false, err
			}
			n := 0
			for _, c := range list.Items {
				if c.Status.Phase == v1alpha1.ClusterReady && c.AgentOnly() {
					n++
				}
			}
			return n == 3, fmt.Errorf("%d of 3 Ready", n)
		})
	}
	stop := func(cmd *exec.Cmd, out *hubtest.SyncBuffer) {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("convoy agent --simulate did not stop cleanly: %v\n%s", err, out.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("convoy agent --simulate did not stop within 30s of SIGINT:\n%s", out.String())
		}
	}

	progress := func(out *hubtest.SyncBuffer) {
		eventually(t, "the progress line", time.Minute, func() (bool, error) {
			return strings.Contains(out.String(), "3 of 3 simulated clusters Ready"), fmt.Errorf("output:\n%s", out.String())
		})
	}
	cmd, out := start()
	ready("three simulated clusters Ready")
	progress(out)
	stop(cmd, out)
	eventually(t, "the stopped agents' clusters Unreachable", time.Minute, func() (bool, error) {
		var list v1alpha1.ClusterList
		if err := admin.List(ctx, &list, client.MatchingLabels{"fleet": "demo"}); err != nil {
			return false, err
		}
		for _, c := range list.Items {
			if c.Status.Phase != v1alpha1.ClusterUnreachable {
				return false, fmt.Errorf("%s is %s", c.Name, c.Status.Phase)
			}
		}
		return len(list.Items) == 3, nil
	})

	// A second run keeps the identities and takes the same clusters over.
	cmd, out = start()
	ready("the same clusters Ready again")
	progress(out)
	stop(cmd, out)

	// A name that belongs to a cluster of another provider is refused.
	f.convoy(t, "cluster", "create", "taken-0000", "--nodes", "1")
	msg := f.convoyFails(t, "agent", "--simulate", "1", "--name-prefix", "taken", "--state-dir", t.TempDir())
	if !strings.Contains(msg, "cluster taken-0000 exists and is a local cluster") {
		t.Errorf("want a refusal naming the local cluster, got:\n%s", msg)
	}
	if msg := f.convoyFails(t, "agent", "--simulate", "2"); !strings.Contains(msg, "--state-dir is required") {
		t.Errorf("want --state-dir asked for, got:\n%s", msg)
	}
}

package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// clusterState is a one-line summary of where a cluster is, for progress output.
func clusterState(c *v1alpha1.Cluster) string {
	phase := string(c.Status.Phase)
	if phase == "" {
		phase = "Pending"
	}
	if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterProvisioned); cond != nil && cond.Status != metav1.ConditionTrue && cond.Message != "" {
		return phase + ": " + cond.Message
	}
	if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterReadyCondition); cond != nil && cond.Message != "" {
		return phase + ": " + cond.Message
	}
	if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterAccepted); cond != nil && cond.Status != "True" {
		return phase + ": " + cond.Message
	}
	return phase
}

// waitResult is what a wait ended with.
type waitResult struct {
	cluster *v1alpha1.Cluster // nil when the cluster is gone
	took    time.Duration
}

// waitClusters polls the named clusters until done says each is finished, printing every
// change of state as a progress line. A Failed cluster ends the wait with its reason.
// Times are printed from start.
func waitClusters(ctx context.Context, c client.Client, names []string, out io.Writer, start time.Time, timeout time.Duration,
	done func(*v1alpha1.Cluster) bool) (map[string]waitResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := map[string]string{}
	results := map[string]waitResult{}
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for {
		for _, name := range names {
			if _, finished := results[name]; finished {
				continue
			}
			cl := &v1alpha1.Cluster{}
			err := c.Get(ctx, client.ObjectKey{Name: name}, cl)
			if apierrors.IsNotFound(err) {
				cl = nil
			} else if err != nil {
				if ctx.Err() != nil {
					break
				}
				return results, hubError("the hub", err)
			}
			state := "deleted"
			if cl != nil {
				state = clusterState(cl)
			}
			if state != last[name] {
				fmt.Fprintf(out, "  %6.1fs  %-*s  %s\n", time.Since(start).Seconds(), width, name, state)
				last[name] = state
			}
			if cl != nil && cl.Status.Phase == v1alpha1.ClusterFailed && cl.Status.ObservedGeneration == cl.Generation {
				return results, fmt.Errorf("cluster %q failed: %s", name, state)
			}
			if done(cl) {
				results[name] = waitResult{cluster: cl, took: time.Since(start)}
			}
		}
		if len(results) == len(names) {
			return results, nil
		}
		select {
		case <-ctx.Done():
			var pending []string
			for _, n := range names {
				if _, ok := results[n]; !ok {
					pending = append(pending, fmt.Sprintf("%s (%s)", n, last[n]))
				}
			}
			return results, fmt.Errorf("gave up after %s waiting for %v; the hub keeps working on it (see `convoy cluster describe`)", timeout, pending)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// isReady reports whether a cluster is Ready (its agent reports it healthy) and provisioned
// as its current spec says.
func isReady(cl *v1alpha1.Cluster) bool {
	if cl == nil || cl.Status.Phase != v1alpha1.ClusterReady {
		return false
	}
	p := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ClusterProvisioned)
	return p != nil && p.Status == metav1.ConditionTrue && p.ObservedGeneration == cl.Generation
}

// isUp reports whether a cluster is Ready and, when Convoy makes its nodes (not an imported
// cluster), its agent reports every node of its pools Ready, so that what `convoy get
// clusters` shows next agrees with what the wait printed.
func isUp(cl *v1alpha1.Cluster) bool {
	if !isReady(cl) {
		return false
	}
	if cl.Spec.Provider == v1alpha1.ProviderImport {
		return true
	}
	inv := inventory(cl)
	if autoscales(cl) || (cl.Spec.Profile != nil && cl.Status.Profile != nil && cl.Status.Profile.Autoscaled) {
		// The provider chooses how many nodes its autoscaled pools have: the hub says they
		// are in line with the spec as it is now, and the agent that all of them are Ready.
		// At least the fewest nodes the pools keep, so that an inventory from before the
		// nodes joined does not count.
		var fewest int32
		for _, p := range cl.Spec.NodePools {
			fewest += p.Count
			if a := p.Autoscale; a != nil {
				fewest += a.Min - p.Count
			}
		}
		if s := cl.Status.Profile; cl.Spec.Profile != nil && s != nil && s.Nodes > 0 {
			fewest = max(fewest, 1)
		}
		return isProvisioned(cl) && cl.Status.ObservedGeneration == cl.Generation &&
			inv.Nodes.Total >= fewest && inv.Nodes.Ready == inv.Nodes.Total
	}
	if cl.Spec.Profile != nil {
		// Its node pools come from its profile's revision: the hub, which reads it, says how
		// many nodes they have, once it has seen the spec as it is now.
		s := cl.Status.Profile
		return isProvisioned(cl) && cl.Status.ObservedGeneration == cl.Generation && s != nil &&
			inv.Nodes.Total == s.Nodes && inv.Nodes.Ready == s.Nodes
	}
	var want int32
	for _, p := range cl.Spec.NodePools {
		want += p.Count
	}
	return inv.Nodes.Total == want && inv.Nodes.Ready == want
}

// autoscales says whether one of the cluster's own node pools autoscales.
func autoscales(cl *v1alpha1.Cluster) bool {
	return slices.ContainsFunc(cl.Spec.NodePools, func(p v1alpha1.NodePool) bool { return p.Autoscale != nil })
}

// isProvisioned reports whether the provider has a cluster in line with its current spec,
// whether or not its agent has joined.
func isProvisioned(cl *v1alpha1.Cluster) bool {
	if cl == nil {
		return false
	}
	p := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ClusterProvisioned)
	return p != nil && p.Status == metav1.ConditionTrue && p.ObservedGeneration == cl.Generation
}

func isGone(cl *v1alpha1.Cluster) bool { return cl == nil }

package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Default failover timings.
const (
	DefaultFailoverGrace  = 5 * time.Second
	DefaultFailoverStable = 30 * time.Second
)

// FailoverDecision says which chosen clusters have their Divided share moved to the others.
type FailoverDecision struct {
	// FailedOver are the clusters whose share is moved, sorted by name.
	FailedOver []v1alpha1.FailedOverCluster
	// Added and Returned name the clusters that changed with this decision, for Events.
	Added, Returned []string
	// RecheckAfter is when the decision changes by itself if nothing else happens; 0 if never.
	RecheckAfter time.Duration
	// Held explains a failover that cannot happen, for example when no healthy cluster is left.
	Held string
}

// Failover decides, from the chosen clusters' health and how long it has lasted, which of them
// lose their Divided share (lost for longer than the grace) and which get it back (Ready again
// for longer than the stable period). Clusters stay failed over in between, so a flapping
// cluster does not move work back and forth. prev is the earlier decision, from the
// Placement's status. It never fails over every chosen cluster: with nowhere to go, shares
// stay put and Held says so.
func Failover(chosen []Choice, clusters map[string]Cluster, policy *v1alpha1.FailoverPolicy, prev []v1alpha1.FailedOverCluster, now time.Time) FailoverDecision {
	var d FailoverDecision
	if policy != nil && policy.Disabled {
		return d
	}
	grace, stable := DefaultFailoverGrace, DefaultFailoverStable
	if policy != nil && policy.GraceSeconds != nil {
		grace = time.Duration(*policy.GraceSeconds) * time.Second
	}
	if policy != nil && policy.StableSeconds != nil {
		stable = time.Duration(*policy.StableSeconds) * time.Second
	}
	was := map[string]v1alpha1.FailedOverCluster{}
	for _, f := range prev {
		was[f.Cluster] = f
	}
	recheck := func(at time.Time) {
		if wait := at.Sub(now); wait > 0 && (d.RecheckAfter == 0 || wait < d.RecheckAfter) {
			d.RecheckAfter = wait
		}
	}
	var out []v1alpha1.FailedOverCluster
	healthyLeft := 0
	for _, ch := range chosen {
		c := clusters[ch.Name]
		f, failed := was[ch.Name]
		switch {
		case failed && c.Healthy && !now.Before(c.Since.Add(stable)):
			d.Returned = append(d.Returned, ch.Name)
			healthyLeft++
		case failed:
			if c.Healthy {
				recheck(c.Since.Add(stable))
			}
			out = append(out, f)
		case !c.Healthy && !now.Before(c.Since.Add(grace)):
			out = append(out, v1alpha1.FailedOverCluster{Cluster: ch.Name, Since: metav1.NewTime(now),
				Reason: fmt.Sprintf("not Ready since %s, longer than the failover grace of %s", c.Since.UTC().Format(time.RFC3339), grace)})
			d.Added = append(d.Added, ch.Name)
		case !c.Healthy:
			recheck(c.Since.Add(grace))
		default:
			healthyLeft++
		}
	}
	if healthyLeft == 0 && len(out) > 0 {
		// Nowhere to move anything: keep what was failed over before, add nothing new.
		var kept []v1alpha1.FailedOverCluster
		for _, f := range out {
			if _, ok := was[f.Cluster]; ok {
				kept = append(kept, f)
			}
		}
		if len(d.Added) > 0 {
			d.Held = fmt.Sprintf("clusters %s are lost, but no chosen cluster is healthy to take their share; it stays where it is", strings.Join(d.Added, ", "))
		}
		out, d.Added = kept, nil
	}
	slices.SortFunc(out, func(a, b v1alpha1.FailedOverCluster) int { return strings.Compare(a.Cluster, b.Cluster) })
	d.FailedOver = out
	return d
}

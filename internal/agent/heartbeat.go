package agent

import (
	"context"
	"math"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
)

func fieldsName(name string) fields.Selector {
	return fields.OneTermEqualSelector("metadata.name", name)
}

// heartbeatInterval is what the hub's agent-config said when the agent last read it, or the
// default.
func (a *Agent) heartbeatInterval() time.Duration {
	if st := a.settings.Load(); st != nil && st.interval > 0 {
		return st.interval
	}
	return v1alpha1.DefaultHeartbeatInterval
}

// heartbeat renews the agent's Lease every interval until the agent's delivery stream has
// opened (after waiting leasePatience for it): from then on every message on the stream is a
// heartbeat. While the hub does not answer it retries
// with growing, jittered waits, and logs the outage once, and the return.
func (a *Agent) heartbeat(ctx context.Context) {
	leases := a.leases.Leases(a.ns)
	holder, _ := os.Hostname()
	holder = a.opts.Cluster + "/" + holder
	var lease *coordinationv1.Lease
	fails := 0
	var down time.Time
	for {
		interval := a.heartbeatInterval()
		if a.awaitingStream() {
			if !sleep(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		if a.streaming() != nil {
			// Every message on the delivery stream is a heartbeat; the Lease rests.
			if !sleep(ctx, interval) {
				return
			}
			continue
		}
		lease = a.renew(ctx, leases, lease, holder, interval)
		wait := interval
		switch {
		case lease == nil:
			if fails == 0 {
				down = time.Now()
				a.log.Warn("heartbeat failed; the hub is unreachable or refuses the agent; retrying with backoff")
			}
			fails++
			wait = delivery.Backoff(interval, fails)
		case fails > 0:
			a.log.Info("heartbeat back", "after", time.Since(down).Round(time.Millisecond))
			fails = 0
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// renew writes one heartbeat and returns the Lease as stored, or nil on failure.
func (a *Agent) renew(ctx context.Context, leases leaseClient, last *coordinationv1.Lease, holder string, interval time.Duration) *coordinationv1.Lease {
	ctx, cancel := context.WithTimeout(ctx, max(interval, 5*time.Second))
	defer cancel()
	now := metav1.NewMicroTime(time.Now())
	duration := int32(math.Ceil(3 * interval.Seconds()))
	if last == nil {
		got, err := leases.Get(ctx, v1alpha1.AgentLease, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			created, err := leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.AgentLease, Labels: map[string]string{v1alpha1.LabelCluster: a.opts.Cluster}},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &duration, RenewTime: &now, AcquireTime: &now},
			}, metav1.CreateOptions{})
			if err != nil {
				return nil
			}
			return created
		case err != nil:
			return nil
		}
		last = got
	}
	l := last.DeepCopy()
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[v1alpha1.LabelCluster] = a.opts.Cluster
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &holder, &duration, &now
	updated, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return nil // read it again next time
	}
	return updated
}

type leaseClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(ctx context.Context, l *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, l *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	profilecontroller "github.com/convoy-dev/convoy/internal/controller/profile"
	"github.com/convoy-dev/convoy/internal/profile"
)

// held is the revision of its profile a cluster is held to.
type held struct {
	revision int64
	spec     v1alpha1.ClusterProfileSpec
	// kept says why the cluster keeps a version other than the revision's, if it does.
	kept string
}

// holdToProfile finds the revision of its profile the cluster is held to, and puts what the
// revision says (the Kubernetes version, the node pools) into c's spec, in memory only, for the
// provider to build from; it returns nil for a cluster without a profile. The revision is the
// cluster's pin, else its target in the profile's update run, else (a cluster the run has not
// seen yet) the run's stable revision, else the newest. Its API server settings come from the
// revision too, and so do its namespaces, default RBAC and admission policies. A profile or
// revision that cannot be found is an error the Accepted condition shows, and the cluster is
// left as it is.
func (r *Reconciler) holdToProfile(ctx context.Context, c *v1alpha1.Cluster) (*held, error) {
	ref := c.Spec.Profile
	if ref == nil {
		return nil, nil
	}
	p := &v1alpha1.ClusterProfile{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: ref.Name}, p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("profile %q does not exist; create it, or point spec.profile at one of `kubectl get clusterprofiles`", ref.Name)
		}
		return nil, fmt.Errorf("read profile %q: %w", ref.Name, err)
	}
	n := p.Status.Revision
	if run := p.Status.Run; run != nil && run.Stable != "" {
		if s, err := strconv.ParseInt(run.Stable, 10, 64); err == nil {
			n = s
		}
	}
	for _, t := range p.Status.Targets {
		if t.Cluster == c.Name {
			n = t.Revision
		}
	}
	if ref.Revision != nil {
		n = *ref.Revision
	}
	if n == 0 {
		return nil, fmt.Errorf("profile %q has no revision yet: the hub stores one in a moment", ref.Name)
	}
	rev, ok, err := profilecontroller.Get(ctx, r.Client, r.Reader, ref.Name, n)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("revision %d of profile %q is not stored (`convoy profile history %s` lists those kept); pin another revision or none", n, ref.Name, ref.Name)
	}
	version, pools := profile.Effective(rev.Spec, c)
	c.Spec.KubernetesVersion = version
	if c.Spec.Provider != v1alpha1.ProviderImport { // an imported cluster's nodes are its owners'
		c.Spec.NodePools = pools
	}
	c.Spec.APIServer, c.Spec.Namespaces = rev.Spec.APIServer.DeepCopy(), rev.Spec.Namespaces
	c.Spec.RBAC, c.Spec.AdmissionPolicies = rev.Spec.RBAC.DeepCopy(), rev.Spec.AdmissionPolicies
	h := &held{revision: n, spec: rev.Spec}
	// A revision older than what the cluster runs (an aborted update run goes back to the
	// stable revision) never takes its version down: Kubernetes has no downgrades. The
	// cluster keeps its version, and its drift says so.
	if inv := c.Status.Inventory; inv != nil && inv.KubernetesVersion != "" {
		if err := profile.CheckVersionChange(inv.KubernetesVersion, c.Spec.KubernetesVersion); errors.Is(err, profile.ErrDowngrade) {
			h.kept = fmt.Sprintf("it stays on Kubernetes %s: %v", inv.KubernetesVersion, err)
			c.Spec.KubernetesVersion = inv.KubernetesVersion
		}
	}
	return h, nil
}

// judgeProfile writes how the cluster stands against the revision it is held to, field by
// field, from what its agent observed, and the ProfileConformant condition.
func (r *Reconciler) judgeProfile(c *v1alpha1.Cluster, h *held) {
	if h == nil {
		return
	}
	drift := profile.Diff(h.spec, r.Shipped, c.Status.Inventory)
	if len(drift) > maxDrift {
		drift = drift[:maxDrift]
	}
	c.Status.Profile = &v1alpha1.ClusterProfileState{Revision: h.revision, Conformant: len(drift) == 0, Drift: drift, Nodes: desiredNodes(c),
		Autoscaled: slices.ContainsFunc(c.Spec.NodePools, func(p v1alpha1.NodePool) bool { return p.Autoscale != nil })}
	if len(drift) == 0 {
		r.setCondition(c, v1alpha1.ClusterProfileConformant, true, "Conformant",
			fmt.Sprintf("the cluster matches revision %d of profile %s", h.revision, c.Spec.Profile.Name))
		return
	}
	fields := make([]string, 0, len(drift))
	for _, d := range drift {
		fields = append(fields, fmt.Sprintf("%s is %q, want %q", d.Field, d.Have, d.Want))
	}
	msg := fmt.Sprintf("the cluster differs from revision %d of profile %s: %s (convoy cluster diff %s)", h.revision, c.Spec.Profile.Name, strings.Join(fields, "; "), c.Name)
	if h.kept != "" {
		msg += "; " + h.kept
	}
	if c.Spec.Provider == v1alpha1.ProviderImport {
		msg += "; Convoy does not change an imported cluster: bring it to the profile with the tools that made it"
	}
	r.setCondition(c, v1alpha1.ClusterProfileConformant, false, "Drifted", msg)
}

// maxDrift is how many differences the status lists (the API's bound).
const maxDrift = 64

// profileProblem records in the Accepted condition why the cluster cannot be held to its
// profile now.
func (r *Reconciler) profileProblem(c *v1alpha1.Cluster, err error) {
	r.setCondition(c, v1alpha1.ClusterAccepted, false, "ProfileUnavailable", err.Error())
	if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterProfileConformant); cond == nil {
		meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: v1alpha1.ClusterProfileConformant, Status: metav1.ConditionUnknown,
			Reason: "ProfileUnavailable", Message: err.Error(), ObservedGeneration: c.Generation})
	}
}

package access

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// The hub API server asks the Authorizer (its first authorizer, a webhook) only about these
// requests: see WebhookMatchConditions.
const (
	agentUserPrefix = "system:serviceaccount:" + v1alpha1.ClusterNamespacePrefix
	clustersRes     = "clusters"
)

var clustersGroup = v1alpha1.GroupVersion.Group

// WebhookMatchConditions are the CEL conditions under which the hub API server asks the
// Authorizer at all: resource requests of an agent's ServiceAccount (in some cluster's
// namespace) or of a cluster's bootstrap token. Every other request goes straight to RBAC.
var WebhookMatchConditions = []string{
	"request.user.startsWith('" + agentUserPrefix + "')" +
		" || (has(request.groups) && request.groups.exists(g, g.startsWith('" + v1alpha1.BootstrapGroupPrefix + "')))",
	"has(request.resourceAttributes)",
}

// Decision is an authorizer's answer: allow, or no opinion (the next authorizer, RBAC,
// decides; for an agent that means a refusal). The Authorizer never denies outright.
type Decision struct {
	Allowed bool
	Reason  string
}

// CurrentAgent gives a cluster's current agent credential generation (the Cluster's
// annotation); ok is false when the hub knows no such Cluster.
type CurrentAgent func(cluster string) (generation int, ok bool)

// rule is one thing an agent may do in its cluster's namespace on the hub.
type rule struct {
	group, resource, subresource string
	verbs                        []string
	// name, when set, is the only object the rule reaches; ownAccount means the agent's
	// current ServiceAccount.
	name       string
	ownAccount bool
}

var (
	read  = []string{"get", "list", "watch"}
	write = []string{"create", "patch"}
)

// agentRules is what an agent's ServiceAccount may do in its cluster's namespace: its Works
// (reading, finalizers) and their status, its Lease, the ConfigMaps and Secrets it reads, its
// Events, and a new token for itself.
var agentRules = []rule{
	{group: clustersGroup, resource: "works", verbs: []string{"get", "list", "watch", "update", "patch"}},
	{group: clustersGroup, resource: "works", subresource: "status", verbs: []string{"get", "update", "patch"}},
	{group: "coordination.k8s.io", resource: "leases", verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
	{resource: "configmaps", verbs: read},
	{resource: "secrets", verbs: read},
	{resource: "events", verbs: write},
	{group: "events.k8s.io", resource: "events", verbs: write},
	{resource: "serviceaccounts", subresource: "token", verbs: []string{"create"}, ownAccount: true},
}

// bootstrapRules is what a cluster's bootstrap token may do there: read which ServiceAccount
// to ask for, and ask for its token.
var bootstrapRules = []rule{
	{resource: "configmaps", verbs: []string{"get"}, name: v1alpha1.AgentConfigMap},
	{resource: "serviceaccounts", subresource: "token", verbs: []string{"create"}, ownAccount: true},
}

// Decide answers one SubjectAccessReview. An agent's ServiceAccount may get its own Cluster,
// get, patch and update its status, and do what agentRules list in its cluster's namespace; a
// cluster's bootstrap token (its group) what bootstrapRules list there. Nothing of another
// cluster. The ServiceAccount or the token's group must be the Cluster's current generation,
// so a revocation holds at once, even while the API server still accepts the old token. This
// replaces a ClusterRole and ClusterRoleBinding, and two Roles and RoleBindings, per cluster:
// the RBAC authorizer walks every ClusterRoleBinding on every request, so 1,000 of them made
// every request of the fleet cost O(clusters), and the Roles were four objects per cluster
// that the API server, its RBAC authorizer and the hub each held.
func Decide(spec authorizationv1.SubjectAccessReviewSpec, current CurrentAgent) Decision {
	cluster, account, generation := "", "", 0
	if rest, ok := strings.CutPrefix(spec.User, agentUserPrefix); ok {
		c, sa, ok := strings.Cut(rest, ":")
		if !ok || c == "" || sa == "" {
			return Decision{Reason: "not an agent"}
		}
		cluster, account = c, sa
	} else if c, g, ok := bootstrapGroup(spec.Groups); ok {
		cluster, generation = c, g
	} else {
		return Decision{Reason: "not an agent"}
	}
	ra := spec.ResourceAttributes
	if ra == nil {
		return Decision{Reason: "not a resource request"}
	}
	var allowed bool
	if ra.Group == clustersGroup && ra.Resource == clustersRes {
		if account == "" {
			return Decision{Reason: "a bootstrap token may not reach Clusters"}
		}
		if ra.Name != cluster {
			return Decision{Reason: "an agent reaches only its own Cluster"}
		}
		switch {
		case ra.Subresource == "" && ra.Verb == "get":
		case ra.Subresource == "status" && (ra.Verb == "get" || ra.Verb == "patch" || ra.Verb == "update"):
		default:
			return Decision{Reason: "an agent may only read its Cluster and write its status"}
		}
		allowed = true
	} else if ra.Namespace != v1alpha1.ClusterNamespace(cluster) {
		return Decision{Reason: "an agent reaches only its own cluster's namespace"}
	}
	if current == nil {
		return Decision{Reason: "the hub's caches are not synced yet"}
	}
	want, ok := current(cluster)
	if !ok {
		return Decision{Reason: "no such Cluster"}
	}
	if account != "" && account != v1alpha1.AgentServiceAccount(want) || account == "" && generation != want {
		return Decision{Reason: "a revoked agent identity"}
	}
	if !allowed {
		rules := agentRules
		if account == "" {
			rules = bootstrapRules
		}
		if !anyAllows(rules, ra, v1alpha1.AgentServiceAccount(want)) {
			return Decision{Reason: "not among what an agent may do in its namespace"}
		}
	}
	return Decision{Allowed: true, Reason: "the agent of cluster " + cluster}
}

// bootstrapGroup finds the group that a cluster's bootstrap tokens carry.
func bootstrapGroup(groups []string) (cluster string, generation int, ok bool) {
	for _, g := range groups {
		rest, found := strings.CutPrefix(g, v1alpha1.BootstrapGroupPrefix)
		if !found {
			continue
		}
		i := strings.LastIndexByte(rest, ':')
		if i <= 0 {
			continue
		}
		gen, err := strconv.Atoi(rest[i+1:])
		if err != nil || gen < 1 || g != v1alpha1.BootstrapGroup(rest[:i], gen) {
			continue // only the group as BootstrapGroup spells it
		}
		return rest[:i], gen, true
	}
	return "", 0, false
}

func anyAllows(rules []rule, ra *authorizationv1.ResourceAttributes, account string) bool {
	for _, r := range rules {
		if r.group != ra.Group || r.resource != ra.Resource || r.subresource != ra.Subresource || !slices.Contains(r.verbs, ra.Verb) {
			continue
		}
		if r.ownAccount && ra.Name != account || r.name != "" && ra.Name != r.name {
			continue
		}
		return true
	}
	return false
}

// Authorizer serves Decide as the hub API server's authorization webhook
// (authorization.k8s.io/v1 SubjectAccessReviews, POSTed by the API server).
type Authorizer struct {
	Log     *slog.Logger
	current atomic.Pointer[CurrentAgent]
}

// Use makes the Authorizer look Clusters up in cached (the hub's informer cache). Until then
// it allows nothing. While the cache syncs (the hub is starting) it waits for it half a
// second per question and then asks direct (the API server), so that agents are not turned
// away at every start of the hub.
func (a *Authorizer) Use(cached, direct client.Reader) {
	f := CurrentAgent(func(cluster string) (int, bool) {
		key := client.ObjectKey{Name: cluster}
		c := &v1alpha1.Cluster{}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		// Only an annotation is read: the cache's own object, not a copy.
		err := cached.Get(ctx, key, c, client.UnsafeDisableDeepCopy)
		cancel()
		if err != nil && !apierrors.IsNotFound(err) && direct != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err = direct.Get(ctx, key, c)
		}
		if err != nil {
			return 0, false
		}
		return v1alpha1.AgentGeneration(c), true
	})
	a.current.Store(&f)
}

// ServeHTTP answers one SubjectAccessReview.
func (a *Authorizer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a SubjectAccessReview", http.StatusMethodNotAllowed)
		return
	}
	var sar authorizationv1.SubjectAccessReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&sar); err != nil {
		http.Error(w, "read the SubjectAccessReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	var current CurrentAgent
	if p := a.current.Load(); p != nil {
		current = *p
	}
	d := Decide(sar.Spec, current)
	if !d.Allowed && a.Log != nil {
		a.Log.Debug("no opinion on an agent's request", "user", sar.Spec.User, "reason", d.Reason)
	}
	out := authorizationv1.SubjectAccessReview{
		TypeMeta: sar.TypeMeta,
		Status:   authorizationv1.SubjectAccessReviewStatus{Allowed: d.Allowed, Reason: d.Reason},
	}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = authorizationv1.SchemeGroupVersion.String(), "SubjectAccessReview"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&out)
}

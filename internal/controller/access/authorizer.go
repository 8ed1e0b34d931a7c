package access

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
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
	clustersRes = "clusters"
	// metricsRes is, to the API server, the resource of every request under the fleet
	// metrics store's API (v1alpha1.MetricsQueryPrefix + "/api/v1/..."); its name is "v1".
	metricsRes = "api"
	// logsRes is, to the API server, the resource of the fleet log store's insert endpoint
	// (v1alpha1.LogsInsertPath); its name is "jsonline".
	logsRes = "insert"
)

var clustersGroup = v1alpha1.GroupVersion.Group

// WebhookMatchConditions are the CEL conditions under which the hub API server asks the
// Authorizer at all: requests of an agent's ServiceAccount (in some cluster's namespace) on
// Clusters, on the fleet metrics store's API (its remote write), on the fleet log store's
// insert endpoint, or on the cluster proxy (its tunnel). Every other request goes
// straight to RBAC.
var WebhookMatchConditions = []string{
	"request.user.startsWith('" + v1alpha1.AgentUserPrefix + "')",
	"has(request.resourceAttributes) && has(request.resourceAttributes.resource) && has(request.resourceAttributes.group) && (" +
		"(request.resourceAttributes.resource == '" + clustersRes + "' && request.resourceAttributes.group == '" + clustersGroup + "') || " +
		"(request.resourceAttributes.resource == '" + metricsRes + "' && request.resourceAttributes.group == '" + v1alpha1.MetricsGroup + "') || " +
		"(request.resourceAttributes.resource == '" + logsRes + "' && request.resourceAttributes.group == '" + v1alpha1.LogsGroup + "') || " +
		"(request.resourceAttributes.resource == '" + v1alpha1.ProxyResource + "' && request.resourceAttributes.group == '" + v1alpha1.ProxyGroup + "'))",
}

// Decision is an authorizer's answer: allow, or no opinion (the next authorizer, RBAC,
// decides; for an agent that means a refusal). The Authorizer never denies outright.
type Decision struct {
	Allowed bool
	Reason  string
}

// CurrentAgent names the ServiceAccount that is a cluster's agent now (its credential
// generation's); ok is false when the hub knows no such Cluster.
type CurrentAgent func(cluster string) (serviceAccount string, ok bool)

// Decide answers one SubjectAccessReview: an agent's ServiceAccount may get its own Cluster,
// and get, patch and update its status, and send its cluster's metrics to the fleet metrics
// store (create on api/write of v1alpha1.MetricsGroup) and its cluster's logs to the fleet log
// store (create on insert/jsonline of v1alpha1.LogsGroup): the hub labels what it sends with its
// cluster; and open its cluster's tunnel to the hub (get on clusters/NAME/attach of
// v1alpha1.ProxyGroup); nothing else, and nothing of another Cluster. The
// ServiceAccount must be the Cluster's current generation, so a revocation holds at once,
// even while the API server still accepts the old token. This replaces a ClusterRole and
// ClusterRoleBinding per cluster: the RBAC authorizer walks every ClusterRoleBinding on every
// request, so 1,000 of them made every request of the fleet cost O(clusters).
func Decide(spec authorizationv1.SubjectAccessReviewSpec, current CurrentAgent) Decision {
	rest, ok := strings.CutPrefix(spec.User, v1alpha1.AgentUserPrefix)
	if !ok {
		return Decision{Reason: "not an agent"}
	}
	cluster, sa, ok := strings.Cut(rest, ":")
	if !ok || cluster == "" || sa == "" {
		return Decision{Reason: "not an agent"}
	}
	ra := spec.ResourceAttributes
	switch {
	case ra != nil && ra.Group == v1alpha1.MetricsGroup && ra.Resource == metricsRes:
		if ra.Name != "v1" || ra.Subresource != "write" || ra.Verb != "create" {
			return Decision{Reason: "an agent may only send metrics (POST api/v1/write)"}
		}
	case ra != nil && ra.Group == v1alpha1.LogsGroup:
		if ra.Resource != logsRes || ra.Name != "jsonline" || ra.Subresource != "" || ra.Verb != "create" {
			return Decision{Reason: "an agent may only send logs (POST insert/jsonline)"}
		}
	case ra != nil && ra.Group == v1alpha1.ProxyGroup:
		if ra.Subresource != v1alpha1.TunnelSubresource {
			// Through the proxy, an agent is anyone: RBAC decides (v1alpha1.ClusterAccessRole).
			return Decision{Reason: "not an agent's tunnel"}
		}
		if ra.Resource != v1alpha1.ProxyResource || ra.Verb != "get" {
			return Decision{Reason: "an agent may only open its tunnel (GET clusters/NAME/attach)"}
		}
		if ra.Name != cluster {
			return Decision{Reason: "an agent reaches only its own Cluster"}
		}
	case ra == nil || ra.Group != clustersGroup || ra.Resource != clustersRes:
		return Decision{Reason: "not a Cluster"}
	case ra.Name != cluster:
		return Decision{Reason: "an agent reaches only its own Cluster"}
	case ra.Subresource == "" && ra.Verb == "get":
	case ra.Subresource == "status" && (ra.Verb == "get" || ra.Verb == "patch" || ra.Verb == "update"):
	default:
		return Decision{Reason: "an agent may only read its Cluster and write its status"}
	}
	if current == nil {
		return Decision{Reason: "the hub's controllers have not started"}
	}
	want, ok := current(cluster)
	if !ok {
		return Decision{Reason: "no such Cluster"}
	}
	if sa != want {
		return Decision{Reason: "a revoked agent identity"}
	}
	return Decision{Allowed: true, Reason: "the agent of cluster " + cluster}
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
	f := CurrentAgent(func(cluster string) (string, bool) {
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
			return "", false
		}
		return v1alpha1.AgentServiceAccount(v1alpha1.AgentGeneration(c)), true
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

package access

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestDecide(t *testing.T) {
	// Cluster "eu" is in its second credential generation; "us" has no Cluster.
	current := CurrentAgent(func(cluster string) (string, bool) {
		if cluster == "eu" {
			return "agent-2", true
		}
		return "", false
	})
	agent := "system:serviceaccount:convoy-cluster-eu:agent-2"
	on := func(verb, sub, name string) *authorizationv1.ResourceAttributes {
		return &authorizationv1.ResourceAttributes{Group: "convoy.dev", Version: "v1alpha1", Resource: "clusters", Subresource: sub, Name: name, Verb: verb}
	}
	metrics := func(verb, sub string) *authorizationv1.ResourceAttributes {
		return &authorizationv1.ResourceAttributes{Group: v1alpha1.MetricsGroup, Version: v1alpha1.MetricsVersion, Resource: "api", Subresource: sub, Name: "v1", Verb: verb}
	}
	logs := func(verb, res, name string) *authorizationv1.ResourceAttributes {
		return &authorizationv1.ResourceAttributes{Group: v1alpha1.LogsGroup, Version: v1alpha1.LogsVersion, Resource: res, Name: name, Verb: verb}
	}
	tunnel := func(verb, sub, name string) *authorizationv1.ResourceAttributes {
		return &authorizationv1.ResourceAttributes{Group: v1alpha1.ProxyGroup, Version: v1alpha1.ProxyVersion, Resource: "clusters", Subresource: sub, Name: name, Verb: verb}
	}
	for _, tc := range []struct {
		name    string
		user    string
		ra      *authorizationv1.ResourceAttributes
		noCache bool // the hub's caches have not synced
		allowed bool
		reason  string
	}{
		{name: "read its Cluster", user: agent, ra: on("get", "", "eu"), allowed: true},
		{name: "read its status", user: agent, ra: on("get", "status", "eu"), allowed: true},
		{name: "patch its status", user: agent, ra: on("patch", "status", "eu"), allowed: true},
		{name: "update its status", user: agent, ra: on("update", "status", "eu"), allowed: true},
		{name: "another Cluster", user: agent, ra: on("get", "", "us"), reason: "an agent reaches only its own Cluster"},
		{name: "another Cluster's status", user: agent, ra: on("patch", "status", "us"), reason: "an agent reaches only its own Cluster"},
		{name: "list Clusters", user: agent, ra: on("list", "", ""), reason: "an agent reaches only its own Cluster"},
		{name: "patch its Cluster", user: agent, ra: on("patch", "", "eu"), reason: "an agent may only read its Cluster and write its status"},
		{name: "delete its Cluster", user: agent, ra: on("delete", "", "eu"), reason: "an agent may only read its Cluster and write its status"},
		{name: "watch its Cluster", user: agent, ra: on("watch", "", "eu"), reason: "an agent may only read its Cluster and write its status"},
		{name: "a revoked generation", user: "system:serviceaccount:convoy-cluster-eu:agent-1", ra: on("get", "", "eu"), reason: "a revoked agent identity"},
		{name: "another account of the namespace", user: "system:serviceaccount:convoy-cluster-eu:default", ra: on("get", "", "eu"), reason: "a revoked agent identity"},
		{name: "a Cluster the hub does not know", user: "system:serviceaccount:convoy-cluster-us:agent-1", ra: on("get", "", "us"), reason: "no such Cluster"},
		{name: "before the controllers start", user: agent, ra: on("get", "", "eu"), noCache: true, reason: "the hub's controllers have not started"},
		{name: "a person", user: "alice", ra: on("get", "", "eu"), reason: "not an agent"},
		{name: "an account elsewhere", user: "system:serviceaccount:kube-system:eu", ra: on("get", "", "eu"), reason: "not an agent"},
		{name: "an agent on Works", user: agent, ra: &authorizationv1.ResourceAttributes{Group: "convoy.dev", Resource: "works", Verb: "get", Name: "eu"}, reason: "not a Cluster"},
		{name: "clusters of another group", user: agent, ra: &authorizationv1.ResourceAttributes{Group: "example.com", Resource: "clusters", Verb: "get", Name: "eu"}, reason: "not a Cluster"},
		{name: "a non-resource request", user: agent, reason: "not a Cluster"},
		{name: "send its metrics", user: agent, ra: metrics("create", "write"), allowed: true},
		{name: "query the metrics store", user: agent, ra: metrics("get", "query"), reason: "an agent may only send metrics (POST api/v1/write)"},
		{name: "query the metrics store by POST", user: agent, ra: metrics("create", "query"), reason: "an agent may only send metrics (POST api/v1/write)"},
		{name: "a revoked generation sends metrics", user: "system:serviceaccount:convoy-cluster-eu:agent-1", ra: metrics("create", "write"), reason: "a revoked agent identity"},
		{name: "a person sends metrics", user: "alice", ra: metrics("create", "write"), reason: "not an agent"},
		{name: "send its logs", user: agent, ra: logs("create", "insert", "jsonline"), allowed: true},
		{name: "query the log store", user: agent, ra: logs("get", "select", "logsql"), reason: "an agent may only send logs (POST insert/jsonline)"},
		{name: "send logs another way", user: agent, ra: logs("create", "insert", "native"), reason: "an agent may only send logs (POST insert/jsonline)"},
		{name: "a revoked generation sends logs", user: "system:serviceaccount:convoy-cluster-eu:agent-1", ra: logs("create", "insert", "jsonline"), reason: "a revoked agent identity"},
		{name: "open its tunnel", user: agent, ra: tunnel("get", "attach", "eu"), allowed: true},
		{name: "open another cluster's tunnel", user: agent, ra: tunnel("get", "attach", "us"), reason: "an agent reaches only its own Cluster"},
		{name: "a revoked generation opens its tunnel", user: "system:serviceaccount:convoy-cluster-eu:agent-1", ra: tunnel("get", "attach", "eu"), reason: "a revoked agent identity"},
		{name: "the tunnel by another verb", user: agent, ra: tunnel("create", "attach", "eu"), reason: "an agent may only open its tunnel (GET clusters/NAME/attach)"},
		{name: "an agent through the proxy", user: agent, ra: tunnel("get", "proxy", "eu"), reason: "not an agent's tunnel"},
		{name: "a person opens a tunnel", user: "alice", ra: tunnel("get", "attach", "eu"), reason: "not an agent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := current
			if tc.noCache {
				cur = nil
			}
			d := Decide(authorizationv1.SubjectAccessReviewSpec{User: tc.user, ResourceAttributes: tc.ra}, cur)
			if d.Allowed != tc.allowed || (!tc.allowed && d.Reason != tc.reason) {
				t.Errorf("Decide = %+v, want allowed %v (reason %q)", d, tc.allowed, tc.reason)
			}
		})
	}
}

// The webhook speaks SubjectAccessReview over HTTP, and allows nothing before Use.
func TestAuthorizerServeHTTP(t *testing.T) {
	a := &Authorizer{}
	ask := func() authorizationv1.SubjectAccessReview {
		t.Helper()
		body, _ := json.Marshal(authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:convoy-cluster-eu:agent-1",
			ResourceAttributes: &authorizationv1.ResourceAttributes{Group: "convoy.dev", Resource: "clusters", Verb: "get", Name: "eu"},
		}})
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/authorize", bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var out authorizationv1.SubjectAccessReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if out.Kind != "SubjectAccessReview" || out.APIVersion != "authorization.k8s.io/v1" {
			t.Errorf("answer is a %s %s", out.APIVersion, out.Kind)
		}
		return out
	}
	if out := ask(); out.Status.Allowed || out.Status.Denied {
		t.Errorf("before Use: %+v, want no opinion", out.Status)
	}
	f := CurrentAgent(func(string) (string, bool) { return "agent-1", true })
	a.current.Store(&f)
	if out := ask(); !out.Status.Allowed {
		t.Errorf("after Use: %+v, want allowed", out.Status)
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/authorize", bytes.NewReader([]byte("{"))))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a malformed review: status %d, want 400", rec.Code)
	}
}

// reader answers Get with a Cluster, an error, or NotFound, and counts the questions.
type reader struct {
	cluster *v1alpha1.Cluster
	err     error
	asked   int
}

func (r *reader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.asked++
	if r.err != nil {
		return r.err
	}
	if r.cluster == nil || r.cluster.Name != key.Name {
		return apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("clusters").GroupResource(), key.Name)
	}
	r.cluster.DeepCopyInto(obj.(*v1alpha1.Cluster))
	return nil
}

func (r *reader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("not listed")
}

// Until the cache answers, the Authorizer asks the API server; what the cache knows is gone
// is gone, without asking.
func TestUseFallsBackToTheAPIServer(t *testing.T) {
	eu := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "eu", Annotations: map[string]string{v1alpha1.AnnotationAgentGeneration: "3"}}}
	for _, tc := range []struct {
		name        string
		cached      *reader
		want        string
		ok          bool
		directAsked int
	}{
		{name: "the cache knows it", cached: &reader{cluster: eu}, want: "agent-3", ok: true},
		{name: "the cache has not synced", cached: &reader{err: errors.New("the cache is not started")}, want: "agent-3", ok: true, directAsked: 1},
		{name: "the cache says it is gone", cached: &reader{}, directAsked: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			direct := &reader{cluster: eu}
			a := &Authorizer{}
			a.Use(tc.cached, direct)
			got, ok := (*a.current.Load())("eu")
			if got != tc.want || ok != tc.ok || direct.asked != tc.directAsked {
				t.Errorf("current(eu) = %q, %v with the API server asked %d times; want %q, %v, %d", got, ok, direct.asked, tc.want, tc.ok, tc.directAsked)
			}
		})
	}
}

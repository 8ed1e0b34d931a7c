package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

const (
	// tokenTTL is how long a hub token is asked to last; the agent renews it well before.
	tokenTTL = 24 * time.Hour
	// renewBefore renews a token that has less than this left.
	renewBefore = 8 * time.Hour
)

// ErrRevoked means the hub refuses the agent's identity: it was revoked, and only a new
// bootstrap token lets the agent back in.
var ErrRevoked = errors.New("the hub refuses this agent's identity (revoked?); run `convoy cluster join` for a new bootstrap token")

// identity is the agent's hub credential: a token of its ServiceAccount, kept in the state
// directory, obtained with a bootstrap token the first time and renewed by itself after.
type identity struct {
	cluster   string
	hub       *rest.Config // without credentials
	store     stateStore
	bootstrap string // file with a bootstrap token; may be empty or missing
	log       *slog.Logger

	current       atomic.Pointer[string]
	mu            sync.Mutex
	expires       time.Time
	usedBootstrap string // the bootstrap token last traded, not to be tried again
	revoked       atomic.Bool
	// settings, if set, gets the agent-config each request reads (the agent's settings).
	settings func(data map[string]string)
	// join, if set, asks the hub process for the token instead of its API server
	// (v1alpha1.DeliveryJoin), presenting bearer; delivery.ErrNoJoin when it cannot.
	join func(ctx context.Context, bearer string) (v1alpha1.JoinResponse, error)
}

type savedToken struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	// Bootstrap is the bootstrap token this identity came from, so that a restarted agent
	// does not trade it again.
	Bootstrap string `json:"bootstrap,omitempty"`
}

// stateStore keeps the agent's token: a file for an agent run as a process, a Secret in the
// member for one run as a Deployment (whose pods come and go).
type stateStore interface {
	load(ctx context.Context) ([]byte, error)
	save(ctx context.Context, raw []byte) error
}

type fileStore string

func (f fileStore) load(context.Context) ([]byte, error) { return os.ReadFile(string(f)) }
func (f fileStore) save(_ context.Context, raw []byte) error {
	return kubeproc.WriteFileDurable(string(f), raw, 0o600)
}

// secretStore keeps the token in a Secret of the member cluster.
type secretStore struct {
	client          kubernetes.Interface
	namespace, name string
}

func (s secretStore) load(ctx context.Context) ([]byte, error) {
	sec, err := s.client.CoreV1().Secrets(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return sec.Data["token.json"], nil
}

func (s secretStore) save(ctx context.Context, raw []byte) error {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: s.name}, Data: map[string][]byte{"token.json": raw}}
	_, err := s.client.CoreV1().Secrets(s.namespace).Update(ctx, sec, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = s.client.CoreV1().Secrets(s.namespace).Create(ctx, sec, metav1.CreateOptions{})
	}
	return err
}

func newIdentity(ctx context.Context, cluster string, hub *rest.Config, store stateStore, bootstrapFile string, log *slog.Logger) *identity {
	id := &identity{cluster: cluster, hub: hub, store: store, bootstrap: bootstrapFile, log: log}
	if raw, err := store.load(ctx); err == nil {
		var s savedToken
		if json.Unmarshal(raw, &s) == nil && s.Token != "" {
			id.current.Store(&s.Token)
			id.expires = s.Expires
			id.usedBootstrap = s.Bootstrap
		}
	}
	return id
}

// joined reports whether the agent holds a token.
func (id *identity) joined() bool { return id.current.Load() != nil }

// token is the current token, or "" before the agent has one.
func (id *identity) token() string {
	if t := id.current.Load(); t != nil {
		return *t
	}
	return ""
}

// wrap adds the current token to every request to the hub, so that a renewed token is used
// at once, and notes a refused one.
func (id *identity) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		if t := id.current.Load(); t != nil {
			req = req.Clone(req.Context())
			req.Header.Set("Authorization", "Bearer "+*t)
		}
		resp, err := rt.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusUnauthorized && id.joined() {
			if !id.revoked.Swap(true) {
				id.log.Error("the hub refused the agent's token", "err", ErrRevoked)
			}
		}
		return resp, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// ensure gets the agent a working token: it renews one that runs out, and trades a new
// bootstrap token when it has none or the hub refused it. It returns nil once the agent has
// a token it may use.
func (id *identity) ensure(ctx context.Context) error {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.joined() && !id.revoked.Load() {
		if time.Until(id.expires) > renewBefore {
			return nil
		}
		err := id.request(ctx, *id.current.Load(), "")
		if err == nil || !errors.Is(err, ErrRevoked) {
			return err
		}
		id.revoked.Store(true)
	}
	token := id.readBootstrap()
	if token == "" || token == id.usedBootstrap {
		if id.joined() {
			return ErrRevoked
		}
		return fmt.Errorf("the agent has not joined the hub and has no bootstrap token in %s; run `convoy cluster join %s`", id.bootstrap, id.cluster)
	}
	if err := id.request(ctx, token, token); err != nil {
		return fmt.Errorf("join with the bootstrap token: %w", err)
	}
	id.revoked.Store(false)
	id.log.Info("joined the hub", "expires", id.expires.Format(time.RFC3339))
	return nil
}

func (id *identity) readBootstrap() string {
	if id.bootstrap == "" {
		return ""
	}
	raw, err := os.ReadFile(id.bootstrap)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}

// request asks the hub for a token of the agent's ServiceAccount, authenticating with
// bearer (a bootstrap token, or the current token to renew it), and keeps it: the hub
// process on its delivery port when it answers joins there, else its API server.
func (id *identity) request(ctx context.Context, bearer, fromBootstrap string) error {
	if id.join != nil {
		resp, err := id.join(ctx, bearer)
		if err == nil {
			if id.settings != nil {
				id.settings(resp.Settings)
			}
			return id.keep(ctx, resp.Token, resp.Expires.Time, fromBootstrap)
		}
		if err := afterJoin(err, fromBootstrap != ""); err != nil {
			return err
		}
		id.log.Debug("no token from the hub's delivery port; asking its API server", "err", err)
	}
	cfg := rest.CopyConfig(id.hub)
	cfg.BearerToken = bearer
	cfg.Timeout = 15 * time.Second
	// Only the core group's client: a whole clientset builds every group's, which cost a
	// starting agent more CPU than its token request.
	cs, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ns := v1alpha1.ClusterNamespace(id.cluster)
	// Only a refused token is a revocation: revoking deletes the ServiceAccount and the
	// bootstrap tokens, and a revoked identity turns Unauthorized moments after its rights
	// go. A Forbidden answer is retried: it can pass (the API server's RBAC behind a Role
	// just made, or the hub's webhook not answering yet).
	refused := apierrors.IsUnauthorized
	// The hub says which ServiceAccount is the agent's now (it changes when revoked).
	cm, err := cs.ConfigMaps(ns).Get(ctx, v1alpha1.AgentConfigMap, metav1.GetOptions{})
	if refused(err) {
		return fmt.Errorf("%w (%v)", ErrRevoked, err)
	}
	if err != nil {
		return err
	}
	if id.settings != nil {
		id.settings(cm.Data)
	}
	sa := cm.Data["serviceAccount"]
	if sa == "" {
		return fmt.Errorf("the hub's %s/%s names no service account yet", ns, v1alpha1.AgentConfigMap)
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(tokenTTL / time.Second))}}
	resp, err := cs.ServiceAccounts(ns).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if refused(err) {
		return fmt.Errorf("%w (%v)", ErrRevoked, err)
	}
	if err != nil {
		return err
	}
	return id.keep(ctx, resp.Status.Token, resp.Status.ExpirationTimestamp.Time, fromBootstrap)
}

// afterJoin decides what a failed join on the delivery port (joinErr) means: nil when the
// agent asks the hub's API server instead, else the error to return. A renewal the hub
// refuses is a revocation. A bootstrap token it refuses goes to the API server, which decides
// (the hub process takes only the bootstrap tokens `convoy cluster join` makes, and the API
// server refuses a revoked one too). A hub that answers no joins there, or cannot be reached
// there, is asked through its API server; any other error (the hub not ready to answer) is
// retried as it is.
func afterJoin(joinErr error, bootstrap bool) error {
	switch {
	case errors.Is(joinErr, delivery.ErrRefused) && !bootstrap:
		return fmt.Errorf("%w (%v)", ErrRevoked, joinErr)
	case errors.Is(joinErr, delivery.ErrRefused), errors.Is(joinErr, delivery.ErrNoJoin):
		return nil
	default:
		return joinErr
	}
}

// keep stores and uses a new token, which came from the bootstrap token fromBootstrap (or ""
// for a renewal).
func (id *identity) keep(ctx context.Context, token string, expires time.Time, fromBootstrap string) error {
	s := savedToken{Token: token, Expires: expires, Bootstrap: id.usedBootstrap}
	if fromBootstrap != "" {
		s.Bootstrap = fromBootstrap
	}
	raw, _ := json.Marshal(s)
	if err := id.store.save(ctx, raw); err != nil {
		return fmt.Errorf("keep the hub token: %w", err)
	}
	id.current.Store(&s.Token)
	id.expires = s.Expires
	id.usedBootstrap = s.Bootstrap
	return nil
}

// run keeps the identity working until ctx ends: it renews the token when it runs low, and
// after a refusal waits for a new bootstrap token. ready is closed once there is a token.
func (id *identity) run(ctx context.Context, ready chan<- struct{}) {
	once := sync.Once{}
	var lastWarn time.Time
	for {
		// ensure costs nothing while the token is good; checking often lets a new bootstrap
		// token in within seconds after a revocation.
		if err := id.ensure(ctx); err == nil {
			once.Do(func() { close(ready) })
		} else if ctx.Err() == nil && time.Since(lastWarn) > 30*time.Second {
			id.log.Warn("no working hub identity; the member is left as it is; retrying", "err", err)
			lastWarn = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func ptr[T any](v T) *T { return &v }

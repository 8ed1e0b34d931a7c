package delivery

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/keyutil"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Enrollment answers the agents' joins (v1alpha1.DeliveryJoin) in the hub process: it trades
// a cluster's bootstrap token, or its agent's current token, for a new token of the cluster's
// current agent ServiceAccount, and gives the agent its settings, all from the hub's cache.
// The token is the one the hub's API server would make for a TokenRequest: signed with the
// same service-account key, with the same issuer, audience and claims, so the API server,
// and the hub's own check (TokenKeys), take it as theirs. A thousand agents joining at once
// then cost the API server no connection, bootstrap authentication, read or token request.
//
// A bootstrap token passes when the API server's bootstrap authenticator and the agent's
// bootstrap RBAC would let it get the token: a Secret bootstrap-token-ID in kube-system, of
// its type, naming the token and holding its secret, unexpired and not being deleted, usable
// for authentication, and whose extra groups hold the cluster's bootstrap group in its
// current credential generation (v1alpha1.BootstrapGroup): a revoked generation's tokens are
// refused at once. The hub sees only the bootstrap Secrets labelled with a cluster, as
// `convoy cluster join` makes them; an agent whose bootstrap token the hub refuses asks the API
// server, which decides.
type Enrollment struct {
	// Cache reads Clusters, the kube-system bootstrap-token Secrets, the agents'
	// ServiceAccounts and agent-config ConfigMaps (the hub's informer cache).
	Cache client.Reader
	// Key signs the tokens: the hub API server's --service-account-signing-key-file.
	Key crypto.Signer
	// Issuer and Audience are the API server's --service-account-issuer and --api-audiences.
	Issuer, Audience string
	// MaxTTL bounds a token's lifetime; zero means a day, what agents ask for.
	MaxTTL time.Duration

	once    sync.Once
	signer  jose.Signer
	initErr error
}

// LoadEnrollment makes an Enrollment that signs with the private key at path.
func LoadEnrollment(cache client.Reader, path, issuer, audience string) (*Enrollment, error) {
	key, err := keyutil.PrivateKeyFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the service-account signing key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the service-account signing key %s cannot sign", path)
	}
	e := &Enrollment{Cache: cache, Key: signer, Issuer: issuer, Audience: audience}
	if err := e.init(); err != nil {
		return nil, err
	}
	return e, nil
}

// init makes the JWS signer: the algorithm and key ID the API server uses for the key (the
// key ID is the URL-safe base64 of the SHA-256 of the public key's DER form, as the API server
// names its keys, so that it finds the key by the token's header).
func (e *Enrollment) init() error {
	e.once.Do(func() { e.signer, e.initErr = e.makeSigner() })
	return e.initErr
}

func (e *Enrollment) makeSigner() (jose.Signer, error) {
	der, err := x509.MarshalPKIXPublicKey(e.Key.Public())
	if err != nil {
		return nil, fmt.Errorf("encode the service-account public key: %w", err)
	}
	sum := sha256.Sum256(der)
	var alg jose.SignatureAlgorithm
	switch k := e.Key.(type) {
	case *rsa.PrivateKey:
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().BitSize {
		case 256:
			alg = jose.ES256
		case 384:
			alg = jose.ES384
		case 521:
			alg = jose.ES512
		default:
			return nil, fmt.Errorf("service-account key: unsupported curve %s", k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("service-account key: unsupported type %T", e.Key)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: e.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", base64.RawURLEncoding.EncodeToString(sum[:])))
	if err != nil {
		return nil, fmt.Errorf("service-account signer: %w", err)
	}
	return signer, nil
}

// minTTL is the shortest token lifetime given, as the API server's TokenRequest.
const minTTL = 10 * time.Minute

// bootstrapToken is the form of a bootstrap token: ID.SECRET.
var bootstrapToken = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)

// errNotReady says the hub has not made the cluster's agent identity yet: the agent asks again.
var errNotReady = errors.New("not ready")

// Join answers req for a caller that presented token: a bootstrap token of req.Cluster, or a
// current agent token of it (auth checks that one). The error wraps ErrNotAgent when the token
// is refused, errNotReady when the cluster's identity is not made yet.
func (e *Enrollment) Join(ctx context.Context, auth Authenticator, token string, req v1alpha1.JoinRequest, now time.Time) (v1alpha1.JoinResponse, error) {
	if err := e.init(); err != nil {
		return v1alpha1.JoinResponse{}, err
	}
	cl := &v1alpha1.Cluster{}
	if err := e.Cache.Get(ctx, client.ObjectKey{Name: req.Cluster}, cl, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return v1alpha1.JoinResponse{}, fmt.Errorf("no cluster %q at the hub (%w)", req.Cluster, ErrNotAgent)
		}
		return v1alpha1.JoinResponse{}, err
	}
	gen := v1alpha1.AgentGeneration(cl)
	if m := bootstrapToken.FindStringSubmatch(token); m != nil {
		if err := e.checkBootstrap(ctx, m[1], m[2], v1alpha1.BootstrapGroup(req.Cluster, gen), now); err != nil {
			return v1alpha1.JoinResponse{}, err
		}
	} else {
		id, err := auth.Authenticate(ctx, token)
		if err != nil {
			return v1alpha1.JoinResponse{}, err
		}
		if id.Cluster != req.Cluster {
			return v1alpha1.JoinResponse{}, fmt.Errorf("this identity (%s) is cluster %q's agent, not cluster %q's (%w)", id.ServiceAccount, id.Cluster, req.Cluster, ErrNotAgent)
		}
		if err := auth.Current(ctx, id); err != nil {
			if errors.Is(err, ErrRevoked) {
				return v1alpha1.JoinResponse{}, fmt.Errorf("%v (%w)", err, ErrNotAgent)
			}
			return v1alpha1.JoinResponse{}, err
		}
	}
	ns := v1alpha1.ClusterNamespace(req.Cluster)
	cm := &corev1.ConfigMap{}
	if err := e.Cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: v1alpha1.AgentConfigMap}, cm, client.UnsafeDisableDeepCopy); err != nil {
		return v1alpha1.JoinResponse{}, fmt.Errorf("cluster %q's agent settings: %v (%w)", req.Cluster, err, errNotReady)
	}
	name := v1alpha1.AgentServiceAccount(gen)
	if cm.Data["serviceAccount"] != name {
		return v1alpha1.JoinResponse{}, fmt.Errorf("cluster %q's agent settings name %q, not %q, yet (%w)", req.Cluster, cm.Data["serviceAccount"], name, errNotReady)
	}
	sa := &corev1.ServiceAccount{}
	if err := e.Cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sa, client.UnsafeDisableDeepCopy); err != nil || !sa.DeletionTimestamp.IsZero() {
		return v1alpha1.JoinResponse{}, fmt.Errorf("cluster %q's agent ServiceAccount %s: %v (%w)", req.Cluster, name, err, errNotReady)
	}
	ttl := e.MaxTTL
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	if req.ExpirationSeconds > 0 && req.ExpirationSeconds < int64(ttl/time.Second) {
		// At least ten minutes, the API server's own floor for a token request.
		ttl = max(time.Duration(req.ExpirationSeconds)*time.Second, minTTL)
	}
	tok, exp, err := e.mint(sa, now, ttl)
	if err != nil {
		return v1alpha1.JoinResponse{}, err
	}
	return v1alpha1.JoinResponse{Token: tok, Expires: metav1.NewTime(exp), Settings: cm.Data}, nil
}

// checkBootstrap checks the bootstrap token ID.SECRET as the API server would, and that it
// carries group.
func (e *Enrollment) checkBootstrap(ctx context.Context, id, secret, group string, now time.Time) error {
	refused := func(why string) error {
		return fmt.Errorf("bootstrap token %s: %s (%w); issue a new one (convoy cluster join)", id, why, ErrNotAgent)
	}
	s := &corev1.Secret{}
	if err := e.Cache.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceSystem, Name: "bootstrap-token-" + id}, s, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return refused("unknown")
		}
		return err
	}
	switch {
	case s.Type != corev1.SecretType("bootstrap.kubernetes.io/token") || !s.DeletionTimestamp.IsZero():
		return refused("unknown")
	case string(s.Data["token-id"]) != id:
		return refused("its Secret names another token")
	case subtle.ConstantTimeCompare(s.Data["token-secret"], []byte(secret)) != 1:
		return refused("wrong secret")
	case string(s.Data["usage-bootstrap-authentication"]) != "true":
		return refused("not for authentication")
	}
	if raw := s.Data["expiration"]; len(raw) > 0 {
		exp, err := time.Parse(time.RFC3339, string(raw))
		if err != nil || !now.Before(exp) {
			return refused("expired")
		}
	}
	if !slices.Contains(strings.Split(string(s.Data["auth-extra-groups"]), ","), group) {
		return refused("not of this cluster's current credentials")
	}
	return nil
}

// mint makes a token of sa valid for ttl from now, with the claims of the API server's
// TokenRequest for a token bound to no object.
func (e *Enrollment) mint(sa *corev1.ServiceAccount, now time.Time, ttl time.Duration) (string, time.Time, error) {
	exp := now.Add(ttl)
	std := jwt.Claims{
		Issuer:    e.Issuer,
		Subject:   "system:serviceaccount:" + sa.Namespace + ":" + sa.Name,
		Audience:  jwt.Audience{e.Audience},
		Expiry:    jwt.NewNumericDate(exp),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        uuid.NewString(),
	}
	var private serviceAccountClaims
	private.Kubernetes.Namespace = sa.Namespace
	private.Kubernetes.ServiceAccount.Name = sa.Name
	private.Kubernetes.ServiceAccount.UID = string(sa.UID)
	tok, err := jwt.Signed(e.signer).Claims(std).Claims(private).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign the token: %w", err)
	}
	return tok, exp, nil
}

// join serves DeliveryJoin.
func (s *Server) join(ctx context.Context, req *v1alpha1.JoinRequest) (*v1alpha1.JoinResponse, error) {
	token := bearerOf(ctx)
	if token == "" {
		return nil, status.Error(codes.Unauthenticated, "no bearer token: the agent joins with a bootstrap token or its ServiceAccount token")
	}
	if req.Cluster == "" {
		return nil, status.Error(codes.InvalidArgument, "the request names no cluster")
	}
	resp, err := s.Enroll.Join(ctx, s.Auth, token, *req, time.Now())
	switch {
	case errors.Is(err, ErrNotAgent):
		// Why goes to the hub's log only: the caller may be no agent, and learns nothing of
		// which clusters or tokens exist.
		s.Log.Info("join refused", "cluster", req.Cluster, "err", err)
		return nil, status.Error(codes.Unauthenticated, "token refused; join the cluster again with a new bootstrap token (convoy cluster join)")
	case errors.Is(err, errNotReady):
		// Not Unavailable: that is what an agent takes for a hub it cannot reach here, and
		// asks the API server instead.
		return nil, status.Errorf(codes.FailedPrecondition, "the cluster's agent identity is not ready; ask again shortly: %v", err)
	case err != nil:
		return nil, status.Errorf(codes.FailedPrecondition, "cannot answer the join yet; ask again shortly: %v", err)
	}
	s.count.joined.Add(1)
	return &resp, nil
}

// joinDesc is DeliveryJoin's gRPC description.
func (s *Server) joinDesc() grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: v1alpha1.DeliveryJoin,
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req v1alpha1.JoinRequest
			if err := dec(&req); err != nil {
				return nil, err
			}
			return s.join(ctx, &req)
		},
	}
}

// bearerOf is the request's bearer token, or "".
func bearerOf(ctx context.Context) string {
	token := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			if t, ok := strings.CutPrefix(v, "Bearer "); ok {
				token = t
			}
		}
	}
	return token
}

package identity

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// storage is the issuer's state for zitadel's op.Provider: sign-ins under way (authorization
// requests, device authorizations), access tokens, and refresh tokens, which are kept in a file
// so that a hub restart logs no one out. Refresh tokens are stored by their hash only.
type storage struct {
	keys      *keyRing
	people    Connector
	client    *nativeClient
	sessions  time.Duration // a refresh token's lifetime
	tokenLife time.Duration
	path      string // the refresh tokens' file

	mu       sync.Mutex
	requests map[string]*authRequest // by ID
	codes    map[string]string       // code -> request ID
	devices  map[string]*deviceAuth  // device code -> authorization
	userCode map[string]string       // normalised user code -> device code
	access   map[string]*grant       // access token ID -> grant
	refresh  map[string]*grant       // hash of the refresh token -> grant
}

// grant is what an access or refresh token stands for.
type grant struct {
	ID       string    `json:"id"`
	Subject  string    `json:"subject"`
	ClientID string    `json:"clientID"`
	Scopes   []string  `json:"scopes"`
	AMR      []string  `json:"amr,omitempty"`
	AuthTime time.Time `json:"authTime"`
	Expires  time.Time `json:"expires"`
	// Stamp is the person's Stamp when they signed in (refresh tokens).
	Stamp string `json:"stamp,omitempty"`
}

type authRequest struct {
	id       string
	req      oidc.AuthRequest
	created  time.Time
	done     bool
	subject  string
	authTime time.Time
}

type deviceAuth struct {
	state    op.DeviceAuthorizationState
	userCode string
}

var (
	_ op.Storage                    = (*storage)(nil)
	_ op.DeviceAuthorizationStorage = (*storage)(nil)
)

func newStorage(path string, keys *keyRing, people Connector, client *nativeClient, sessions, tokenLife time.Duration) (*storage, error) {
	s := &storage{keys: keys, people: people, client: client, sessions: sessions, tokenLife: tokenLife, path: path,
		requests: map[string]*authRequest{}, codes: map[string]string{}, devices: map[string]*deviceAuth{},
		userCode: map[string]string{}, access: map[string]*grant{}, refresh: map[string]*grant{}}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	} else if err != nil {
		return nil, fmt.Errorf("read the issuer's sessions: %w", err)
	}
	if err := json.Unmarshal(raw, &s.refresh); err != nil {
		return nil, fmt.Errorf("read the issuer's sessions %s: %w", path, err)
	}
	return s, nil
}

// saveRefresh writes the refresh tokens that have not expired; s.mu is held.
func (s *storage) saveRefresh() error {
	now := time.Now()
	for h, g := range s.refresh {
		if now.After(g.Expires) {
			delete(s.refresh, h)
		}
	}
	raw, err := json.Marshal(s.refresh)
	if err != nil {
		return err
	}
	return kubeproc.WriteFileAtomic(s.path, raw, 0o600)
}

// sweep forgets sign-ins and tokens that have ended.
func (s *storage) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.requests {
		if now.Sub(r.created) > 10*time.Minute {
			delete(s.requests, id)
		}
	}
	for code, id := range s.codes {
		if s.requests[id] == nil {
			delete(s.codes, code)
		}
	}
	for dc, d := range s.devices {
		if now.After(d.state.Expires.Add(time.Minute)) {
			delete(s.devices, dc)
			delete(s.userCode, d.userCode)
		}
	}
	for id, g := range s.access {
		if now.After(g.Expires) {
			delete(s.access, id)
		}
	}
}

func randomID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:])
}

// normalUserCode is a user code as typed, without dashes, spaces or case.
func normalUserCode(c string) string {
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(c))
}

// CreateAuthRequest implements op.AuthStorage. PKCE (S256) is required: the only client is a
// public one.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send a code_challenge with code_challenge_method S256")
	}
	r := &authRequest{id: randomID(), req: *req, created: time.Now()}
	s.mu.Lock()
	s.requests[r.id] = r
	s.mu.Unlock()
	return r, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.requests[id]; r != nil {
		c := *r // the sign-in page completes the stored one meanwhile
		return &c, nil
	}
	return nil, errors.New("no such sign-in: it ended, or took longer than 10 minutes")
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("unknown code")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.requests[id] == nil {
		return errors.New("no such sign-in")
	}
	s.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// completeAuthRequest records who signed in for the request id.
func (s *storage) completeAuthRequest(id string, p Person) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.requests[id]
	if r == nil {
		return errors.New("this sign-in ended or took too long: start it again")
	}
	if r.done {
		return errors.New("this sign-in is complete already")
	}
	r.done, r.subject, r.authTime = true, p.Subject, time.Now()
	return nil
}

func (s *storage) newGrant(req op.TokenRequest, life time.Duration) *grant {
	g := &grant{ID: randomID(), Subject: req.GetSubject(), Scopes: req.GetScopes(), AuthTime: time.Now(), Expires: time.Now().Add(life)}
	if r, ok := req.(op.IDTokenRequest); ok {
		g.ClientID, g.AMR, g.AuthTime = r.GetClientID(), r.GetAMR(), r.GetAuthTime()
	}
	if g.ClientID == "" {
		g.ClientID = s.client.GetID()
	}
	return g
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	g := s.newGrant(req, s.tokenLife)
	s.mu.Lock()
	s.access[g.ID] = g
	s.mu.Unlock()
	return g.ID, g.Expires, nil
}

// CreateAccessAndRefreshTokens implements op.AuthStorage. A refresh token is used once: the
// one it replaces (current) is forgotten. The session's end does not move on a refresh. The
// person must still be known to the connector with the credentials they signed in with; when
// the connector cannot tell (the hub is starting), the answer is a server error, which a
// client takes for a failure to retry, not for the end of its session.
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	p, err := s.people.Lookup(ctx, req.GetSubject())
	if errors.Is(err, ErrUnknownSubject) {
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the session has ended")
	} else if err != nil {
		return "", "", time.Time{}, oidc.ErrServerError().WithParent(err)
	}
	access := s.newGrant(req, s.tokenLife)
	refresh := s.newGrant(req, s.sessions)
	refresh.AuthTime, refresh.Stamp = access.AuthTime, p.Stamp
	token := randomID()
	s.mu.Lock()
	defer s.mu.Unlock()
	var old *grant
	if current != "" {
		if old = s.refresh[hashToken(current)]; old == nil || old.Stamp != p.Stamp {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the session has ended")
		}
		refresh.Expires = old.Expires
		delete(s.refresh, hashToken(current))
	}
	s.access[access.ID] = access
	s.refresh[hashToken(token)] = refresh
	if err := s.saveRefresh(); err != nil {
		delete(s.access, access.ID)
		delete(s.refresh, hashToken(token))
		if old != nil {
			s.refresh[hashToken(current)] = old
		}
		return "", "", time.Time{}, oidc.ErrServerError().WithParent(fmt.Errorf("save the session: %w", err))
	}
	return access.ID, token, access.Expires, nil
}

// TokenRequestByRefreshToken implements op.AuthStorage; CreateAccessAndRefreshTokens checks
// the person.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	g := s.refresh[hashToken(token)]
	s.mu.Unlock()
	if g == nil || time.Now().After(g.Expires) {
		return nil, op.ErrInvalidRefreshToken
	}
	c := *g
	return &refreshRequest{grant: &c}, nil
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, g := range s.refresh {
		if g.Subject == userID && g.ClientID == clientID {
			delete(s.refresh, h)
		}
	}
	for id, g := range s.access {
		if g.Subject == userID && g.ClientID == clientID {
			delete(s.access, id)
		}
	}
	return s.saveRefresh()
}

// RevokeToken implements op.AuthStorage (RFC 7009): `convoy logout` revokes its refresh token.
func (s *storage) RevokeToken(_ context.Context, token, userID, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.access[token]; g != nil {
		if g.ClientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("the token is another client's")
		}
		delete(s.access, token)
		return nil
	}
	// zitadel passes the refresh token's ID (GetRefreshTokenInfo: its hash), or the token.
	key := token
	if s.refresh[key] == nil {
		key = hashToken(token)
	}
	if g := s.refresh[key]; g != nil {
		if g.ClientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("the token is another client's")
		}
		delete(s.refresh, key)
		if err := s.saveRefresh(); err != nil {
			return oidc.ErrServerError().WithParent(err)
		}
	}
	return nil // an unknown token is revoked already (RFC 7009)
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.refresh[hashToken(token)]
	if g == nil || g.ClientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return g.Subject, hashToken(token), nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{s.keys.signing()}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.ES256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	var out []op.Key
	for _, k := range s.keys.published(time.Now()) {
		out = append(out, publicKey{k})
	}
	return out, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.GetID() {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	return s.client, nil
}

func (s *storage) AuthorizeClientIDSecret(context.Context, string, string) error {
	return oidc.ErrInvalidClient().WithDescription("this issuer has no confidential clients")
}

// SetUserinfoFromScopes implements op.OPStorage: what the ID token and userinfo say of the
// person, from the connector, now.
func (s *storage) SetUserinfoFromScopes(ctx context.Context, info *oidc.UserInfo, subject, _ string, scopes []string) error {
	p, err := s.people.Lookup(ctx, subject)
	if err != nil {
		return err
	}
	info.Subject = p.Subject
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = p.Email, true
		case oidc.ScopeProfile:
			info.Name, info.PreferredUsername = cmp.Or(p.Name, p.Email), cmp.Or(p.Name, p.Email)
		case ScopeGroups:
			info.AppendClaims("groups", nonNil(p.Groups))
		}
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	g := s.access[tokenID]
	s.mu.Unlock()
	if g == nil || g.Subject != subject || time.Now().After(g.Expires) {
		return errors.New("the access token is not valid")
	}
	return s.SetUserinfoFromScopes(ctx, info, subject, g.ClientID, g.Scopes)
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("this issuer offers no introspection")
}

func (s *storage) GetPrivateClaimsFromScopes(ctx context.Context, subject, _ string, scopes []string) (map[string]any, error) {
	if !slices.Contains(scopes, ScopeGroups) {
		return nil, nil
	}
	p, err := s.people.Lookup(ctx, subject)
	if err != nil {
		return nil, err
	}
	return map[string]any{"groups": nonNil(p.Groups)}, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("this issuer takes no JWT profile grants")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("this issuer takes no JWT profile grants")
}

func (s *storage) Health(context.Context) error { return nil }

// StoreDeviceAuthorization implements op.DeviceAuthorizationStorage.
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.userCode[normalUserCode(userCode)]; taken {
		return op.ErrDuplicateUserCode
	}
	s.devices[deviceCode] = &deviceAuth{userCode: normalUserCode(userCode),
		state: op.DeviceAuthorizationState{ClientID: clientID, Scopes: scopes, Expires: expires}}
	s.userCode[normalUserCode(userCode)] = deviceCode
	return nil
}

func (s *storage) GetDeviceAuthorizatonState(_ context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[deviceCode]
	if d == nil || d.state.ClientID != clientID {
		return nil, errors.New("unknown device code")
	}
	st := d.state
	if st.Done || st.Denied {
		// A device code is exchanged once.
		delete(s.devices, deviceCode)
		delete(s.userCode, d.userCode)
	}
	return &st, nil
}

// completeDevice records who signed in for the user code.
func (s *storage) completeDevice(userCode string, p Person) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[s.userCode[normalUserCode(userCode)]]
	if d == nil || time.Now().After(d.state.Expires) {
		return errors.New("this code is unknown or has expired: start `convoy login` again")
	}
	if d.state.Done {
		return errors.New("this code was used already")
	}
	d.state.Done, d.state.Subject, d.state.AMR, d.state.AuthTime = true, p.Subject, []string{"pwd"}, time.Now()
	return nil
}

// knownUserCode says whether a device authorization waits for this user code.
func (s *storage) knownUserCode(userCode string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[s.userCode[normalUserCode(userCode)]]
	return d != nil && !d.state.Done && time.Now().Before(d.state.Expires)
}

// op.AuthRequest.
func (r *authRequest) GetID() string                      { return r.id }
func (r *authRequest) GetACR() string                     { return "" }
func (r *authRequest) GetAMR() []string                   { return []string{"pwd"} }
func (r *authRequest) GetAudience() []string              { return []string{r.req.ClientID} }
func (r *authRequest) GetAuthTime() time.Time             { return r.authTime }
func (r *authRequest) GetClientID() string                { return r.req.ClientID }
func (r *authRequest) GetNonce() string                   { return r.req.Nonce }
func (r *authRequest) GetRedirectURI() string             { return r.req.RedirectURI }
func (r *authRequest) GetScopes() []string                { return r.req.Scopes }
func (r *authRequest) GetState() string                   { return r.req.State }
func (r *authRequest) GetSubject() string                 { return r.subject }
func (r *authRequest) Done() bool                         { return r.done }
func (r *authRequest) GetResponseType() oidc.ResponseType { return r.req.ResponseType }
func (r *authRequest) GetResponseMode() oidc.ResponseMode { return r.req.ResponseMode }
func (r *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	return &oidc.CodeChallenge{Challenge: r.req.CodeChallenge, Method: r.req.CodeChallengeMethod}
}

// refreshRequest is op.RefreshTokenRequest.
type refreshRequest struct{ *grant }

func (r *refreshRequest) GetAMR() []string                 { return r.AMR }
func (r *refreshRequest) GetAudience() []string            { return []string{r.ClientID} }
func (r *refreshRequest) GetAuthTime() time.Time           { return r.AuthTime }
func (r *refreshRequest) GetClientID() string              { return r.ClientID }
func (r *refreshRequest) GetScopes() []string              { return r.Scopes }
func (r *refreshRequest) GetSubject() string               { return r.Subject }
func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.Scopes = scopes }

// nativeClient is `convoy login`: public, PKCE, loopback redirects on any port (RFC 8252),
// and the device flow.
type nativeClient struct{ idTokenLife time.Duration }

var _ op.Client = (*nativeClient)(nil)

func (c *nativeClient) GetID() string { return v1alpha1.IssuerClientID }
func (c *nativeClient) RedirectURIs() []string {
	return []string{"http://127.0.0.1" + CallbackPath, "http://localhost" + CallbackPath}
}
func (c *nativeClient) PostLogoutRedirectURIs() []string    { return nil }
func (c *nativeClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeNative }
func (c *nativeClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodNone }
func (c *nativeClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *nativeClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode}
}
func (c *nativeClient) LoginURL(id string) string           { return loginPath + "?authRequestID=" + id }
func (c *nativeClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *nativeClient) IDTokenLifetime() time.Duration      { return c.idTokenLife }
func (c *nativeClient) DevMode() bool                       { return false }
func (c *nativeClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *nativeClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *nativeClient) IsScopeAllowed(scope string) bool     { return scope == ScopeGroups }
func (c *nativeClient) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *nativeClient) ClockSkew() time.Duration             { return 0 }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

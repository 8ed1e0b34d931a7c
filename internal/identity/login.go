package identity

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/oauth2"

	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// The client side of the hub's issuer, for `convoy login`, `convoy auth token` and
// `convoy logout`: the device flow or the authorization code flow with PKCE on a loopback
// port, and a token cache that refreshes, as kubelogin does.

// LoginConfig is where a person signs in.
type LoginConfig struct {
	// Issuer is the issuer's URL.
	Issuer string `json:"issuer"`
	// ClientID is the client they sign in with.
	ClientID string `json:"clientID"`
	// IssuerCA is the PEM CA of the issuer's serving certificate; empty trusts the host's
	// roots.
	IssuerCA string `json:"issuerCA,omitempty"`
}

// ErrIssuerDown is an issuer that does not answer.
var ErrIssuerDown = errors.New("the issuer does not answer")

// ErrNotLoggedIn is a token cache with no usable session: the person must sign in again.
var ErrNotLoggedIn = errors.New("not logged in")

func (c LoginConfig) context(ctx context.Context) (context.Context, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.IssuerCA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.IssuerCA)) {
			return nil, fmt.Errorf("the issuer's CA is not PEM certificates")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: tr, Timeout: 30 * time.Second}), nil
}

// discovery is the part of the issuer's discovery document a client needs.
type discovery struct {
	Issuer        string `json:"issuer"`
	Authorization string `json:"authorization_endpoint"`
	Token         string `json:"token_endpoint"`
	Device        string `json:"device_authorization_endpoint"`
	Revocation    string `json:"revocation_endpoint"`
}

// client is ctx with an HTTP client that trusts the issuer, and the issuer's endpoints.
func (c LoginConfig) client(ctx context.Context) (context.Context, *oauth2.Config, discovery, error) {
	ctx, err := c.context(ctx)
	if err != nil {
		return nil, nil, discovery{}, err
	}
	cfg, d, err := c.oauth2(ctx)
	return ctx, cfg, d, err
}

// oauth2 reads the issuer's discovery document.
func (c LoginConfig) oauth2(ctx context.Context) (*oauth2.Config, discovery, error) {
	var d discovery
	hc := ctx.Value(oauth2.HTTPClient).(*http.Client)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, d, fmt.Errorf("issuer %q: %w", c.Issuer, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, d, issuerError(c.Issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, d, fmt.Errorf("%w: the issuer at %s answered %s to its discovery document", ErrIssuerDown, c.Issuer, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, d, fmt.Errorf("the issuer at %s: its discovery document: %w", c.Issuer, err)
	}
	if d.Issuer != c.Issuer {
		return nil, d, fmt.Errorf("the issuer at %s says it is %q", c.Issuer, d.Issuer)
	}
	return &oauth2.Config{
		ClientID: c.ClientID,
		Endpoint: oauth2.Endpoint{AuthURL: d.Authorization, TokenURL: d.Token, DeviceAuthURL: d.Device, AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{"openid", "email", "profile", ScopeGroups, "offline_access"},
	}, d, nil
}

// issuerError says that the issuer is down when it cannot be reached.
func issuerError(issuer string, err error) error {
	var netErr net.Error
	var opErr *net.OpError
	if errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &netErr) && netErr.Timeout()) || (errors.As(err, &opErr) && opErr.Op == "dial") {
		return fmt.Errorf("%w: %s: %v; the hub serves it (`convoy hub`): is the hub running?", ErrIssuerDown, issuer, err)
	}
	return fmt.Errorf("the issuer at %s: %w", issuer, err)
}

// DeviceLogin signs in with the device flow: show gets the page to open and the code to
// type there (and the page with the code filled in), and DeviceLogin waits until the person
// has signed in, the code expires, or ctx ends.
func DeviceLogin(ctx context.Context, c LoginConfig, show func(uri, code, complete string)) (*Session, error) {
	ctx, cfg, _, err := c.client(ctx)
	if err != nil {
		return nil, err
	}
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		return nil, issuerError(c.Issuer, err)
	}
	show(da.VerificationURI, da.UserCode, da.VerificationURIComplete)
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, fmt.Errorf("sign-in: %w", err)
	}
	return newSession(c, tok)
}

// BrowserLogin signs in with the authorization code flow and PKCE: it takes the answer on a
// loopback port, and show gets the page to open in a browser.
func BrowserLogin(ctx context.Context, c LoginConfig, show func(url string)) (*Session, error) {
	ctx, cfg, _, err := c.client(ctx)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	cfg.RedirectURL = fmt.Sprintf("http://%s%s", l.Addr(), CallbackPath)
	verifier, state := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	type answer struct {
		code string
		err  error
	}
	got := make(chan answer, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != CallbackPath {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		a := answer{code: q.Get("code")}
		switch {
		case q.Get("state") != state:
			a.err = errors.New("the answer's state does not match the request's")
		case q.Get("error") != "":
			a.err = fmt.Errorf("the issuer refused: %s %s", q.Get("error"), q.Get("error_description"))
		}
		if a.err != nil {
			http.Error(w, a.err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "Signed in. Go back to your terminal.")
		}
		select {
		case got <- a:
		default:
		}
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	show(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)))
	var a answer
	select {
	case a = <-got:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if a.err != nil {
		return nil, a.err
	}
	tok, err := cfg.Exchange(ctx, a.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("sign-in: %w", err)
	}
	return newSession(c, tok)
}

// Session is a sign-in, as cached: the ID token the API servers take, and the refresh token
// that renews it.
type Session struct {
	LoginConfig
	IDToken      string    `json:"idToken"`
	Expiry       time.Time `json:"expiry"`
	RefreshToken string    `json:"refreshToken,omitempty"`
}

func newSession(c LoginConfig, tok *oauth2.Token) (*Session, error) {
	id, _ := tok.Extra("id_token").(string)
	if id == "" {
		return nil, errors.New("the issuer gave no ID token")
	}
	claims, err := Claims(id)
	if err != nil {
		return nil, err
	}
	exp, _ := claims["exp"].(float64)
	return &Session{LoginConfig: c, IDToken: id, Expiry: time.Unix(int64(exp), 0), RefreshToken: tok.RefreshToken}, nil
}

// Claims are a JWT's claims, read without checking its signature: for showing who a token is
// for, and when it expires; the API servers check it.
func Claims(jwt string) (map[string]any, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, errors.New("the ID token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("the ID token: %w", err)
	}
	c := map[string]any{}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("the ID token: %w", err)
	}
	return c, nil
}

// Fresh returns the session with an ID token valid for at least a minute more, refreshed
// with the issuer when it is not; ErrNotLoggedIn when the session has ended.
func (s *Session) Fresh(ctx context.Context) (*Session, error) {
	if time.Until(s.Expiry) > time.Minute {
		return s, nil
	}
	if s.RefreshToken == "" {
		return nil, fmt.Errorf("%w: the token from %s expired at %s", ErrNotLoggedIn, s.Issuer, s.Expiry.Format(time.RFC3339))
	}
	ctx, cfg, _, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: s.RefreshToken}).Token()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
		return nil, fmt.Errorf("%w: the session at %s has ended", ErrNotLoggedIn, s.Issuer)
	} else if err != nil {
		return nil, issuerError(s.Issuer, err)
	}
	return newSession(s.LoginConfig, tok)
}

// Revoke asks the issuer to forget the session's refresh token.
func (s *Session) Revoke(ctx context.Context) error {
	if s.RefreshToken == "" {
		return nil
	}
	ctx, _, d, err := s.client(ctx)
	if err != nil {
		return err
	}
	if d.Revocation == "" {
		return nil
	}
	form := url.Values{"token": {s.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {s.ClientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Revocation, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := ctx.Value(oauth2.HTTPClient).(*http.Client).Do(req)
	if err != nil {
		return issuerError(s.Issuer, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the issuer refused to revoke the session: %s", resp.Status)
	}
	return nil
}

// TokenCache keeps sessions in a directory, one file (0600) per issuer and client.
type TokenCache struct{ Dir string }

// DefaultTokenCache is ~/.convoy/tokens.
func DefaultTokenCache() TokenCache {
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return TokenCache{Dir: filepath.Join(home, ".convoy", "tokens")}
}

func (tc TokenCache) path(issuer, clientID string) string {
	sum := sha256.Sum256([]byte(issuer + "\x00" + clientID))
	return filepath.Join(tc.Dir, hex.EncodeToString(sum[:12])+".json")
}

// Load is the session for issuer and client; ErrNotLoggedIn when there is none.
func (tc TokenCache) Load(issuer, clientID string) (*Session, error) {
	raw, err := os.ReadFile(tc.path(issuer, clientID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w to %s", ErrNotLoggedIn, issuer)
	} else if err != nil {
		return nil, err
	}
	s := &Session{}
	if err := json.Unmarshal(raw, s); err != nil {
		return nil, fmt.Errorf("read the token cache: %w", err)
	}
	return s, nil
}

// Save keeps s.
func (tc TokenCache) Save(s *Session) error {
	if err := os.MkdirAll(tc.Dir, 0o700); err != nil {
		return err
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return kubeproc.WriteFileAtomic(tc.path(s.Issuer, s.ClientID), raw, 0o600)
}

// All are the cached sessions.
func (tc TokenCache) All() ([]*Session, []string, error) {
	paths, err := filepath.Glob(filepath.Join(tc.Dir, "*.json"))
	if err != nil {
		return nil, nil, err
	}
	var out []*Session
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		s := &Session{}
		if json.Unmarshal(raw, s) == nil {
			out = append(out, s)
		}
	}
	return out, paths, nil
}

// Fresh is the cached session for issuer and client, refreshed when its ID token expires
// within a minute and saved again. Processes that ask at once (kubectl and helm, side by
// side) take turns, so a refresh token is used once. With the issuer down, a token that has
// not expired yet is still given.
func (tc TokenCache) Fresh(ctx context.Context, issuer, clientID string) (*Session, error) {
	if err := os.MkdirAll(tc.Dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(tc.path(issuer, clientID)+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock the token cache: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing unlocks too
	s, err := tc.Load(issuer, clientID)
	if err != nil {
		return nil, err
	}
	fresh, err := s.Fresh(ctx)
	switch {
	case errors.Is(err, ErrIssuerDown) && time.Now().Before(s.Expiry):
		return s, nil
	case err != nil:
		return nil, err
	case fresh != s:
		if err := tc.Save(fresh); err != nil {
			return nil, err
		}
	}
	return fresh, nil
}

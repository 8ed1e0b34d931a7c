package identity

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// ScopeGroups asks for the person's groups in the "groups" claim.
const ScopeGroups = "groups"

// CallbackPath is where `convoy login --browser` takes the authorization code, on loopback.
const CallbackPath = "/callback"

const (
	loginPath  = "/login"
	devicePath = "/device"
)

// Defaults of IssuerConfig.
const (
	DefaultTokenLifetime   = 10 * time.Minute
	DefaultSessionLifetime = 12 * time.Hour
	DefaultKeyRotation     = 24 * time.Hour
)

// IssuerConfig configures an Issuer.
type IssuerConfig struct {
	// URL is the issuer (https://HOST:PORT), as tokens name it and API servers reach it.
	URL string
	// Dir keeps the signing keys, the key that seals access tokens, and the sessions
	// (refresh tokens, by hash); 0700.
	Dir string
	// People checks sign-ins.
	People Connector
	// TokenLifetime is an ID token's (and access token's); zero means DefaultTokenLifetime.
	TokenLifetime time.Duration
	// SessionLifetime is how long a sign-in lasts, refreshed, before the person signs in
	// again; zero means DefaultSessionLifetime.
	SessionLifetime time.Duration
	// KeyRotation is how often the signing key is replaced; zero means DefaultKeyRotation.
	KeyRotation time.Duration
	Log         *slog.Logger
}

// Issuer is an OpenID Connect provider on zitadel's op package: the authorization code flow
// with PKCE and the device flow for one public client (`convoy login`,
// v1alpha1.IssuerClientID), refresh tokens, ES256 ID tokens with the person's email (verified)
// and groups, and a key that rotates without logging anyone out. Its sign-in pages ask for a
// user name and password, which its Connector checks. Serve Handler over TLS.
type Issuer struct {
	// failures are the recent failed sign-ins per user name, for throttling guesses.
	failMu   sync.Mutex
	failures map[string][]time.Time

	cfg      IssuerConfig
	keys     *keyRing
	store    *storage
	provider *op.Provider
	handler  http.Handler
}

// NewIssuer prepares an issuer and its state in cfg.Dir.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = DefaultSessionLifetime
	}
	if cfg.KeyRotation == 0 {
		cfg.KeyRotation = DefaultKeyRotation
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the issuer's dir: %w", err)
	}
	// A replaced key stays published for as long as a token it signed may live.
	keys, err := loadKeyRing(filepath.Join(cfg.Dir, "keys.json"), cfg.TokenLifetime+time.Minute)
	if err != nil {
		return nil, err
	}
	sealKey, err := loadOrMakeSecret(filepath.Join(cfg.Dir, "seal.key"))
	if err != nil {
		return nil, err
	}
	client := &nativeClient{idTokenLife: cfg.TokenLifetime}
	store, err := newStorage(filepath.Join(cfg.Dir, "sessions.json"), keys, cfg.People, client, cfg.SessionLifetime, cfg.TokenLifetime)
	if err != nil {
		return nil, err
	}
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:             sealKey,
		CodeMethodS256:        true,
		GrantTypeRefreshToken: true,
		SupportedUILocales:    []language.Tag{language.English},
		SupportedScopes:       []string{oidc.ScopeOpenID, oidc.ScopeEmail, oidc.ScopeProfile, oidc.ScopeOfflineAccess, ScopeGroups},
		SupportedClaims:       []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "email", "email_verified", "name", "preferred_username", "groups"},
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime: 5 * time.Minute, PollInterval: 2 * time.Second,
			UserFormPath: devicePath, UserCode: op.UserCodeBase20,
		},
	}, store, op.StaticIssuer(cfg.URL), op.WithLogger(cfg.Log))
	if err != nil {
		return nil, fmt.Errorf("make the OpenID Connect provider: %w", err)
	}
	is := &Issuer{cfg: cfg, keys: keys, store: store, provider: provider, failures: map[string][]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc(loginPath, is.login)
	mux.HandleFunc(devicePath, is.device)
	mux.Handle("/", provider)
	is.handler = op.NewIssuerInterceptor(provider.IssuerFromRequest).Handler(mux)
	return is, nil
}

// Handler serves the issuer: discovery, keys, the OAuth endpoints and the sign-in pages.
func (is *Issuer) Handler() http.Handler { return is.handler }

// RotateKey replaces the signing key now. Tokens the old one signed stay valid until they
// expire: it stays in the key set until then.
func (is *Issuer) RotateKey() error {
	if err := is.keys.rotate(time.Now()); err != nil {
		return err
	}
	is.cfg.Log.Info("issuer signing key rotated", "kid", is.keys.signing().ID)
	return nil
}

// SigningKeyID is the ID (kid) of the key that signs now.
func (is *Issuer) SigningKeyID() string { return is.keys.signing().ID }

// Run rotates the signing key every KeyRotation and forgets ended sign-ins, until ctx ends.
func (is *Issuer) Run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			is.store.sweep(now)
			is.forgetFailures(now)
			if now.Sub(is.keys.signing().Created) >= is.cfg.KeyRotation {
				if err := is.RotateKey(); err != nil {
					is.cfg.Log.Error("rotate the issuer's signing key", "err", err)
				}
			}
		}
	}
}

func loadOrMakeSecret(path string) ([32]byte, error) {
	var k [32]byte
	raw, err := os.ReadFile(path)
	if err == nil && len(raw) == len(k) {
		copy(k[:], raw)
		return k, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return k, fmt.Errorf("read the issuer's sealing key: %w", err)
	}
	if _, err := rand.Read(k[:]); err != nil {
		return k, err
	}
	if err := os.WriteFile(path, k[:], 0o600); err != nil {
		return k, fmt.Errorf("save the issuer's sealing key: %w", err)
	}
	return k, nil
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Convoy sign-in</title></head>
<body style="font-family: sans-serif; max-width: 28em; margin: 4em auto">
<h1>Convoy</h1>
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{if .Form}}<form method="post" action="{{.Action}}">
{{if .AuthRequestID}}<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">{{end}}
{{if .Device}}<p><label>Code <input name="user_code" value="{{.UserCode}}" autocomplete="off" required></label></p>{{end}}
<p><label>User name or email <input name="username" autocomplete="username" required autofocus></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Sign in</button></p>
</form>{{end}}
</body></html>
`))

type pageData struct {
	Message, Action, AuthRequestID, UserCode string
	Form, Device                             bool
}

func (is *Issuer) show(w http.ResponseWriter, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = page.Execute(w, d)
}

// signIn checks the form's credentials; on failure it has answered.
func (is *Issuer) signIn(w http.ResponseWriter, r *http.Request, d pageData) (Person, bool) {
	username := r.PostFormValue("username")
	if !is.mayTry(strings.ToLower(username), time.Now()) {
		is.cfg.Log.Warn("sign-in throttled", "username", username)
		d.Message, d.Form = fmt.Sprintf("Too many failed sign-ins for this user: wait %s and try again.", failWindow), true
		is.show(w, http.StatusTooManyRequests, d)
		return Person{}, false
	}
	p, err := is.cfg.People.Authenticate(r.Context(), username, r.PostFormValue("password"))
	switch {
	case errors.Is(err, ErrBadCredentials):
		is.failed(strings.ToLower(username), time.Now())
		is.cfg.Log.Info("sign-in refused", "username", username)
		d.Message, d.Form = "Wrong user name or password.", true
		is.show(w, http.StatusUnauthorized, d)
		return Person{}, false
	case err != nil:
		is.cfg.Log.Error("sign-in failed", "err", err)
		d.Message, d.Form = "Sign-in is not possible right now; try again in a moment.", true
		is.show(w, http.StatusServiceUnavailable, d)
		return Person{}, false
	}
	return p, true
}

// login is the authorization code flow's sign-in page (Client.LoginURL).
func (is *Issuer) login(w http.ResponseWriter, r *http.Request) {
	d := pageData{Action: loginPath, AuthRequestID: r.FormValue("authRequestID"), Form: true}
	if _, err := is.store.AuthRequestByID(r.Context(), d.AuthRequestID); err != nil {
		is.show(w, http.StatusBadRequest, pageData{Message: "This sign-in has ended: start `convoy login` again."})
		return
	}
	switch r.Method {
	case http.MethodGet:
		is.show(w, http.StatusOK, d)
	case http.MethodPost:
		p, ok := is.signIn(w, r, d)
		if !ok {
			return
		}
		if err := is.store.completeAuthRequest(d.AuthRequestID, p); err != nil {
			is.show(w, http.StatusBadRequest, pageData{Message: err.Error()})
			return
		}
		is.cfg.Log.Info("signed in", "user", p.Name, "subject", p.Subject, "flow", "code")
		http.Redirect(w, r, op.AuthCallbackURL(is.provider)(r.Context(), d.AuthRequestID), http.StatusFound)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// device is the device flow's page (the verification URI): the code the terminal shows, and
// the credentials.
func (is *Issuer) device(w http.ResponseWriter, r *http.Request) {
	d := pageData{Action: devicePath, UserCode: r.FormValue("user_code"), Form: true, Device: true}
	switch r.Method {
	case http.MethodGet:
		is.show(w, http.StatusOK, d)
	case http.MethodPost:
		if !is.store.knownUserCode(d.UserCode) {
			d.Message = "This code is unknown or has expired: check it, or start `convoy login` again."
			is.show(w, http.StatusBadRequest, d)
			return
		}
		p, ok := is.signIn(w, r, d)
		if !ok {
			return
		}
		if err := is.store.completeDevice(d.UserCode, p); err != nil {
			d.Message = err.Error()
			is.show(w, http.StatusBadRequest, d)
			return
		}
		is.cfg.Log.Info("signed in", "user", p.Name, "subject", p.Subject, "flow", "device")
		is.show(w, http.StatusOK, pageData{Message: "Signed in as " + p.Email + ". Go back to your terminal."})
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// A user name with maxFailures failed sign-ins within failWindow may not try again until the
// oldest of them is that old: guessing a password takes years, and its owner waits minutes.
const (
	maxFailures = 5
	failWindow  = 5 * time.Minute
)

func (is *Issuer) mayTry(username string, now time.Time) bool {
	is.failMu.Lock()
	defer is.failMu.Unlock()
	recent := is.failures[username][:0]
	for _, t := range is.failures[username] {
		if now.Sub(t) < failWindow {
			recent = append(recent, t)
		}
	}
	if len(recent) == 0 {
		delete(is.failures, username)
	} else {
		is.failures[username] = recent
	}
	return len(recent) < maxFailures
}

func (is *Issuer) failed(username string, now time.Time) {
	is.failMu.Lock()
	defer is.failMu.Unlock()
	is.failures[username] = append(is.failures[username], now)
}

// forgetFailures drops the failures older than failWindow (Run calls it every minute).
func (is *Issuer) forgetFailures(now time.Time) {
	is.failMu.Lock()
	names := make([]string, 0, len(is.failures))
	for name := range is.failures {
		names = append(names, name)
	}
	is.failMu.Unlock()
	for _, name := range names {
		is.mayTry(name, now)
	}
}

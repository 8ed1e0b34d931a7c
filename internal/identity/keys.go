package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// keyRing is the issuer's signing keys, kept in a file: the newest signs, and the ones it
// replaced stay published until every token they signed has expired, so that a rotation logs
// no one out. API servers fetch the key set again when a token names a key they have not
// seen.
type keyRing struct {
	path string
	// keep is how long a replaced key stays published: the longest a token lives.
	keep time.Duration

	mu   sync.Mutex
	keys []ringKey // oldest first; the last signs
}

type ringKey struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// Replaced is when a newer key took over signing; zero for the one that signs.
	Replaced time.Time `json:"replaced,omitzero"`
	// PEM is the private key (PKCS #8).
	PEM string `json:"pem"`

	key *ecdsa.PrivateKey
}

// loadKeyRing reads the ring at path, or makes one with a single key.
func loadKeyRing(path string, keep time.Duration) (*keyRing, error) {
	r := &keyRing{path: path, keep: keep}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, r.rotate(time.Now())
	} else if err != nil {
		return nil, fmt.Errorf("read the issuer's keys: %w", err)
	}
	if err := json.Unmarshal(raw, &r.keys); err != nil {
		return nil, fmt.Errorf("read the issuer's keys %s: %w", path, err)
	}
	for i := range r.keys {
		b, _ := pem.Decode([]byte(r.keys[i].PEM))
		if b == nil {
			return nil, fmt.Errorf("read the issuer's keys %s: key %s is not PEM", path, r.keys[i].ID)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		ec, ok := k.(*ecdsa.PrivateKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("read the issuer's keys %s: key %s is no ECDSA key", path, r.keys[i].ID)
		}
		r.keys[i].key = ec
	}
	if len(r.keys) == 0 {
		return r, r.rotate(time.Now())
	}
	return r, nil
}

// rotate makes a new signing key, and drops the replaced keys whose tokens have all expired.
func (r *keyRing) rotate(now time.Time) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := make([]ringKey, 0, len(r.keys)+1)
	for _, old := range r.keys {
		if old.Replaced.IsZero() {
			old.Replaced = now
		}
		if now.Sub(old.Replaced) < r.keep {
			kept = append(kept, old)
		}
	}
	kept = append(kept, ringKey{ID: hex.EncodeToString(id), Created: now,
		PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), key: k})
	raw, err := json.MarshalIndent(kept, "", "  ")
	if err != nil {
		return err
	}
	if err := kubeproc.WriteFileDurable(r.path, raw, 0o600); err != nil {
		return fmt.Errorf("save the issuer's keys: %w", err)
	}
	r.keys = kept
	return nil
}

// signing is the key that signs now.
func (r *keyRing) signing() ringKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[len(r.keys)-1]
}

// published are the keys whose tokens may still be valid at now.
func (r *keyRing) published(now time.Time) []ringKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ringKey
	for _, k := range r.keys {
		if k.Replaced.IsZero() || now.Sub(k.Replaced) < r.keep {
			out = append(out, k)
		}
	}
	return out
}

// op.SigningKey and op.Key for a ring key.
type signingKey struct{ k ringKey }

func (s signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (s signingKey) Key() any                                    { return s.k.key }
func (s signingKey) ID() string                                  { return s.k.ID }

type publicKey struct{ k ringKey }

func (p publicKey) ID() string                         { return p.k.ID }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }

var (
	_ op.SigningKey = signingKey{}
	_ op.Key        = publicKey{}
)

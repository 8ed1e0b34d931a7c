package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/bcrypt"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Person is who a Connector says someone is: what the issuer's tokens say of them.
type Person struct {
	// Subject is their stable identifier at the connector (the token's sub).
	Subject string
	// Email is their address, the user name the API servers know them by (verified).
	Email string
	// Name is how they are shown (the token's name); empty is Email.
	Name string
	// Groups are their teams.
	Groups []string
	// Stamp changes when their credentials do (a new password): sessions opened before end
	// at their next refresh.
	Stamp string
}

// ErrBadCredentials is a sign-in that does not match anyone, or someone who may not sign in.
// Which of the two is not said, to the person or in the error.
var ErrBadCredentials = errors.New("wrong user name or password")

// ErrUnknownSubject is a subject the connector no longer has, or no longer lets in.
var ErrUnknownSubject = errors.New("the person is no longer known, or is disabled")

// Connector is where the issuer's people come from. The hub's Users are one; an upstream
// OpenID Connect provider, federated, would be another. Implementations are safe for
// concurrent use.
type Connector interface {
	// Authenticate checks a sign-in (the user name, or the email, and the password) and
	// returns who it is. It returns ErrBadCredentials when they do not match, whatever the
	// reason, and another error when it cannot tell (its store does not answer).
	Authenticate(ctx context.Context, username, password string) (Person, error)
	// Lookup returns who subject is now (their groups may have changed since they signed
	// in), or ErrUnknownSubject when they are gone or disabled. The issuer asks it at every
	// token refresh, so that removing someone ends their session at their token's expiry.
	// A subject is never reused for another person.
	Lookup(ctx context.Context, subject string) (Person, error)
}

// Users is the Connector of the hub's User objects (v1alpha1.User), read through Reader, a
// cache at the hub. A person signs in with the User's name or email; their subject is the
// User's UID, so a User deleted and made again under the same name is someone else, and their
// stamp is a hash of the password hash.
type Users struct {
	// Reader returns where Users are read, or an error while there is none yet (the hub's
	// controllers are starting).
	Reader func() (client.Reader, error)
}

var _ Connector = Users{}

// noOneHash is compared with when no User matches, so that an unknown name takes as long as
// a wrong password and the answer does not tell which it was.
var noOneHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("no one"), bcrypt.DefaultCost)
	return h
})

// Authenticate implements Connector.
func (u Users) Authenticate(ctx context.Context, username, password string) (Person, error) {
	user, err := u.find(ctx, username)
	if err != nil {
		return Person{}, err
	}
	hash := noOneHash()
	if user != nil {
		hash = []byte(user.Spec.PasswordHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || user == nil || user.Spec.Disabled {
		return Person{}, ErrBadCredentials
	}
	return personOf(user), nil
}

// Lookup implements Connector.
func (u Users) Lookup(ctx context.Context, subject string) (Person, error) {
	r, err := u.Reader()
	if err != nil {
		return Person{}, err
	}
	list := &v1alpha1.UserList{}
	if err := r.List(ctx, list); err != nil {
		return Person{}, fmt.Errorf("read users: %w", err)
	}
	for i := range list.Items {
		if string(list.Items[i].UID) == subject {
			if list.Items[i].Spec.Disabled {
				return Person{}, ErrUnknownSubject
			}
			return personOf(&list.Items[i]), nil
		}
	}
	return Person{}, ErrUnknownSubject
}

// find is the User named username, or the one whose email it is; nil when none is.
func (u Users) find(ctx context.Context, username string) (*v1alpha1.User, error) {
	r, err := u.Reader()
	if err != nil {
		return nil, err
	}
	user := &v1alpha1.User{}
	err = r.Get(ctx, client.ObjectKey{Name: username}, user)
	if err == nil {
		return user, nil
	}
	if !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
		return nil, fmt.Errorf("read users: %w", err)
	}
	list := &v1alpha1.UserList{}
	if err := r.List(ctx, list); err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	var found *v1alpha1.User
	for i := range list.Items {
		if list.Items[i].Spec.Email == username {
			if found != nil {
				// Two people with one address: neither signs in by it (by name, each does).
				return nil, nil
			}
			found = &list.Items[i]
		}
	}
	return found, nil
}

func personOf(u *v1alpha1.User) Person {
	sum := sha256.Sum256([]byte(u.Spec.PasswordHash))
	return Person{Subject: string(u.UID), Name: u.Name, Email: u.Spec.Email, Groups: append([]string(nil), u.Spec.Groups...),
		Stamp: hex.EncodeToString(sum[:8])}
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// User is a person who signs in to the hub's own OpenID Connect issuer (internal/identity),
// with the name or the email and a password. The hub's API server, and every member's, then
// know them as oidc:EMAIL in the groups oidc:GROUP, and plain RBAC decides what
// they may do. Only the password's bcrypt hash is stored; `convoy user add` makes it. Reading
// Users is for cluster admins: nothing binds them to anyone else.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=convoy
// +kubebuilder:printcolumn:name="Email",type=string,JSONPath=`.spec.email`
// +kubebuilder:printcolumn:name="Groups",type=string,JSONPath=`.spec.groups`
// +kubebuilder:printcolumn:name="Disabled",type=boolean,JSONPath=`.spec.disabled`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type User struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec UserSpec `json:"spec"`
}

// UserSpec is who a User is and how they prove it.
type UserSpec struct {
	// Email is the person's address, their user name in tokens (it counts as verified: the
	// admin who made the User vouches for it).
	// +required
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Pattern=`^[^@\s]+@[^@\s]+$`
	Email string `json:"email"`
	// Groups are the teams the person is in, as their tokens carry them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9._@-]*$`
	Groups []string `json:"groups,omitempty"`
	// PasswordHash is the bcrypt hash of the password ($2a$, $2b$ or $2y$, of cost 10 to 14,
	// as `convoy user add` or `htpasswd -nbBC 10` make it); never the password itself.
	// +required
	// +kubebuilder:validation:Pattern=`^\$2[aby]\$1[0-4]\$[./A-Za-z0-9]{53}$`
	PasswordHash string `json:"passwordHash"`
	// Disabled refuses the person's sign-ins and token refreshes; the tokens they hold end
	// at their expiry (IssuerTokenLifetime at most).
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// +kubebuilder:object:root=true

// UserList is a list of Users.
type UserList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []User `json:"items"`
}

package v1alpha1

// The contract between the hub's OpenID Connect issuer and `convoy login`: where a person who
// holds no credentials yet finds the issuer, and which client they are.
const (
	// IssuerClientID is the client that `convoy login` is at the hub's issuer: a public
	// (native) client, with PKCE for the authorization code and the device flow. Tokens are
	// for it (their aud).
	IssuerClientID = "convoy"
	// LoginNamespace and LoginConfigMap name the ConfigMap in which the hub publishes its
	// issuer to anyone, signed in or not (as kubeadm's cluster-info): keys LoginIssuerKey (the
	// URL), LoginClientIDKey and LoginIssuerCAKey (the PEM CA of its serving certificate).
	LoginNamespace   = "kube-public"
	LoginConfigMap   = "convoy-login"
	LoginIssuerKey   = "issuer"
	LoginClientIDKey = "clientID"
	LoginIssuerCAKey = "issuerCA"
)

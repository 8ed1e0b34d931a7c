package kubeproc

import (
	"crypto/x509"
	"net/http"
	"slices"
)

// FromFrontProxy reports whether r came from an API server's aggregator: whether its client
// certificate chains to ca (the front-proxy CA, --requestheader-client-ca-file) for client
// authentication and names one of names (--requestheader-allowed-names; any, when empty). Only
// then may its X-Remote-User and X-Remote-Group headers be believed.
func FromFrontProxy(r *http.Request, ca *x509.CertPool, names []string) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || ca == nil {
		return false
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return false
	}
	return len(names) == 0 || slices.Contains(names, leaf.Subject.CommonName)
}

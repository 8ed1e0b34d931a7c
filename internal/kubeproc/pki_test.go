package kubeproc

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnsurePKIIsStableAndValid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := EnsurePKI(dir, "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	second, err := EnsurePKI(dir, "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	if string(first.CA.CertPEM) != string(second.CA.CertPEM) || string(first.Serving.CertPEM) != string(second.Serving.CertPEM) ||
		string(first.Admin.KeyPEM) != string(second.Admin.KeyPEM) {
		t.Fatal("a second EnsurePKI changed certificates that were still good")
	}

	roots := x509.NewCertPool()
	roots.AddCert(first.CA.Cert)
	serving, err := parseCert(first.Serving.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("serving certificate does not verify for 127.0.0.1: %v", err)
	}
	admin, _ := parseCert(first.Admin.CertPEM)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate does not verify as a client: %v", err)
	}
	if admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin organization = %v", admin.Subject.Organization)
	}
	if st, _ := os.Stat(filepath.Join(dir, "ca.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode = %v, want 0600", st.Mode().Perm())
	}
}

func TestLoadOrIssueReplacesACertificateThatNoLongerFits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	req := CertRequest{Name: "x", CommonName: "x", DNSNames: []string{"a"}, Server: true}
	old, err := ca.LoadOrIssue(dir, req)
	if err != nil {
		t.Fatal(err)
	}
	req.DNSNames = []string{"a", "b"}
	renewed, err := ca.LoadOrIssue(dir, req)
	if err != nil {
		t.Fatal(err)
	}
	if string(old.CertPEM) == string(renewed.CertPEM) {
		t.Fatal("certificate not re-issued after its names changed")
	}
	cert, _ := parseCert(renewed.CertPEM)
	if len(cert.DNSNames) != 2 || time.Until(cert.NotAfter) < 300*24*time.Hour {
		t.Errorf("re-issued certificate: names %v, expires %v", cert.DNSNames, cert.NotAfter)
	}
}

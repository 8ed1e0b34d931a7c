package kubeproc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// renewBefore re-issues a leaf certificate that expires sooner than this.
	renewBefore = 30 * 24 * time.Hour
)

// CA is a certificate authority kept on disk as ca.crt and ca.key.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
}

// LoadOrCreateCA loads the CA in dir, or makes one named commonName if dir has none.
func LoadOrCreateCA(dir, commonName string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if certPEM, key, err := loadPair(certPath, keyPath); err == nil {
		cert, err := parseCert(certPEM)
		if err != nil {
			return nil, fmt.Errorf("read CA %s: %w", certPath, err)
		}
		return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read CA in %s: %w", dir, err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign CA: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writePair(certPath, keyPath, certPEM, key, WriteFileDurable); err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// CACertPath is where LoadOrCreateCA keeps the CA certificate in dir.
func CACertPath(dir string) string { return filepath.Join(dir, "ca.crt") }

// CAKeyPath is where LoadOrCreateCA keeps the CA key in dir.
func CAKeyPath(dir string) string { return filepath.Join(dir, "ca.key") }

// CertRequest describes a leaf certificate.
type CertRequest struct {
	// Name is the file name stem: the pair is kept as NAME.crt and NAME.key.
	Name         string
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	// Server makes a serving certificate; otherwise it is a client certificate.
	Server bool
}

// KeyPair is a leaf certificate and key on disk, with their PEM contents.
type KeyPair struct {
	CertPath, KeyPath string
	CertPEM, KeyPEM   []byte
}

// LoadOrIssue returns the pair for req in dir, issuing a new one when there is none, when the
// one there was not signed by ca, does not match req, or expires within 30 days.
func (ca *CA) LoadOrIssue(dir string, req CertRequest) (KeyPair, error) {
	kp := KeyPair{CertPath: filepath.Join(dir, req.Name+".crt"), KeyPath: filepath.Join(dir, req.Name+".key")}
	if certPEM, key, err := loadPair(kp.CertPath, kp.KeyPath); err == nil {
		if cert, err := parseCert(certPEM); err == nil && ca.fits(cert, req) {
			kp.CertPEM = certPEM
			kp.KeyPEM, err = encodeKey(key)
			return kp, err
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return kp, fmt.Errorf("generate key for %s: %w", req.Name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
	}
	if req.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return kp, fmt.Errorf("sign %s: %w", req.Name, err)
	}
	kp.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if kp.KeyPEM, err = encodeKey(key); err != nil {
		return kp, err
	}
	return kp, writePair(kp.CertPath, kp.KeyPath, kp.CertPEM, key, WriteFileAtomic)
}

// fits reports whether cert was signed by ca, says what req asks for, and is not near expiry.
func (ca *CA) fits(cert *x509.Certificate, req CertRequest) bool {
	if cert.CheckSignatureFrom(ca.Cert) != nil || time.Until(cert.NotAfter) < renewBefore {
		return false
	}
	if cert.Subject.CommonName != req.CommonName || !slices.Equal(cert.Subject.Organization, req.Organization) {
		return false
	}
	if !slices.Equal(cert.DNSNames, req.DNSNames) || len(cert.IPAddresses) != len(req.IPs) {
		return false
	}
	for i, ip := range req.IPs {
		if !cert.IPAddresses[i].Equal(ip) {
			return false
		}
	}
	return true
}

// LoadOrCreateSigningKey keeps a key pair for signing service-account tokens as NAME.key
// (private) and NAME.pub (public) in dir, and returns both paths.
func LoadOrCreateSigningKey(dir, name string) (keyPath, pubPath string, err error) {
	keyPath, pubPath = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	if _, err := os.Stat(keyPath); err == nil {
		if _, err := os.Stat(pubPath); err == nil {
			return keyPath, pubPath, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate %s key: %w", name, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", "", fmt.Errorf("encode %s public key: %w", name, err)
	}
	if err := WriteFileDurable(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	return keyPath, pubPath, WriteFileDurable(pubPath, pubPEM, 0o644)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func loadPair(certPath, keyPath string) ([]byte, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("%s holds no PEM key", keyPath)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", keyPath, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s is not a signing key", keyPath)
	}
	return certPEM, signer, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func writePair(certPath, keyPath string, certPEM []byte, key crypto.Signer, write func(string, []byte, os.FileMode) error) error {
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	// The key goes first: a certificate on disk without its key would look like a broken pair.
	if err := write(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return write(certPath, certPEM, 0o644)
}

// WriteFileAtomic replaces path with data through a rename, so that a crash of any process
// leaves the old or the new file, never half of one. It does not fsync: after a power loss
// the file may be empty, so use it for what can be made again (leaf certificates,
// kubeconfigs, status); WriteFileDurable is for what cannot.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, false)
}

// WriteFileDurable is WriteFileAtomic plus an fsync before the rename, for files that cannot
// be made again without breaking trust, such as a CA key.
func WriteFileDurable(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, true)
}

func writeFile(path string, data []byte, perm os.FileMode, durable bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil && durable {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

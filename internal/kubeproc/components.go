package kubeproc

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The upstream executables Convoy runs, by file name.
const (
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kine                  = "kine"
	Kwok                  = "kwok"
	// VictoriaMetrics is the hub's fleet metrics store, and VMAgent the members' collector.
	VictoriaMetrics = "victoria-metrics"
	VMAgent         = "vmagent"
	// VictoriaLogs is the hub's fleet log store (the members' log collector is convoy's own,
	// package logship).
	VictoriaLogs = "victoria-logs"
)

// Binaries finds the upstream executables in one directory: bin/ of a checkout after
// `make tools`, which is also where `make` puts convoy itself.
type Binaries struct{ Dir string }

// DefaultBinDir is $CONVOY_BIN_DIR when set, else the directory of the running executable
// when it holds kube-apiserver (bin/convoy next to the tools), else ./bin.
func DefaultBinDir() string {
	if d := os.Getenv("CONVOY_BIN_DIR"); d != "" {
		return d
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		if _, err := os.Stat(filepath.Join(dir, KubeAPIServer)); err == nil {
			return dir
		}
	}
	return "bin"
}

// Path returns the executable called name, or an error that tells the user how to get it.
func (b Binaries) Path(name string) (string, error) {
	p, err := filepath.Abs(filepath.Join(b.Dir, name))
	if err != nil {
		return "", err
	}
	st, err := os.Stat(p)
	if err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in %s: run `make tools` in the Convoy checkout to build the pinned Kubernetes binaries (the first build takes about 10 minutes), or pass --bin-dir", name, b.Dir)
}

// DatastoreTLS holds the client certificate for a datastore that needs one (etcd over https,
// Postgres or MySQL with client certificates). Empty fields are left out.
type DatastoreTLS struct {
	CAFile, CertFile, KeyFile string
}

// KineConfig is the configuration of one kine process.
type KineConfig struct {
	// Endpoint is kine's --endpoint: a sqlite://, postgres://, mysql:// or nats:// DSN.
	Endpoint string
	// Port kine serves its etcd API on, on 127.0.0.1.
	Port int
	TLS  DatastoreTLS
}

// Args are kine's command-line arguments.
func (c KineConfig) Args() []string {
	args := []string{
		"--endpoint=" + c.Endpoint,
		"--listen-address=127.0.0.1:" + strconv.Itoa(c.Port),
		"--metrics-bind-address=0",
	}
	if c.TLS.CAFile != "" {
		args = append(args, "--ca-file="+c.TLS.CAFile)
	}
	if c.TLS.CertFile != "" {
		args = append(args, "--cert-file="+c.TLS.CertFile, "--key-file="+c.TLS.KeyFile)
	}
	return args
}

// SQLiteEndpoint is kine's endpoint for a SQLite database file at path, with kine's own
// default parameters (WAL, synchronous=NORMAL: a committed write survives a crash of any
// process; only a power loss may take the last ones).
func SQLiteEndpoint(path string) string {
	return "sqlite://" + path + "?_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate&_stmt_cache_size=20&cache=shared"
}

// ServiceAccountIssuer is the issuer of the ServiceAccount tokens every API server that
// kubeproc configures signs, and the audience they are for.
const ServiceAccountIssuer = "https://kubernetes.default.svc"

// APIServerConfig is the configuration of one kube-apiserver.
type APIServerConfig struct {
	// EtcdServers are the etcd (or kine) URLs, for example http://127.0.0.1:2379.
	EtcdServers []string
	EtcdTLS     DatastoreTLS
	// Port is the secure port on 127.0.0.1.
	Port int
	PKI  *PKI
	// ServiceCIDR is the Service IP range; empty means 10.96.0.0/16.
	ServiceCIDR string
	// Kubelets, when set, is the API server's client certificate for kubelets: it turns on
	// the node authorizer for the kubelets' own credentials and reaches kubelets by their
	// address (logs, exec, port-forward).
	Kubelets *KeyPair
	// Advertise, when set, is the address (not a loopback one) at which the cluster's pods
	// reach the API server: the "kubernetes" Service points at Advertise:Port. Without it the
	// Service has no endpoints.
	Advertise string
	// AuthorizationConfig, when set, is the path of an AuthorizationConfiguration
	// (AuthorizationConfig) that replaces --authorization-mode; it must list Node itself when
	// Kubelets is set.
	AuthorizationConfig string
	// AuthenticationConfig, when set, is the path of an AuthenticationConfiguration
	// (AuthenticationConfig): the OIDC issuers whose tokens the API server accepts.
	AuthenticationConfig string
	// Extra arguments, appended last so they win.
	Extra []string
}

// Args are kube-apiserver's command-line arguments.
func (c APIServerConfig) Args() []string {
	cidr := c.ServiceCIDR
	if cidr == "" {
		cidr = "10.96.0.0/16"
	}
	args := []string{
		"--etcd-servers=" + strings.Join(c.EtcdServers, ","),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.Port),
		"--cert-dir=" + c.PKI.Dir,
		"--tls-cert-file=" + c.PKI.Serving.CertPath,
		"--tls-private-key-file=" + c.PKI.Serving.KeyPath,
		"--client-ca-file=" + CACertPath(c.PKI.Dir),
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--api-audiences=" + ServiceAccountIssuer,
		"--service-account-key-file=" + c.PKI.ServiceAccountPub,
		"--service-account-signing-key-file=" + c.PKI.ServiceAccountKey,
		"--service-cluster-ip-range=" + cidr,
		"--profiling=false",
		// On SIGTERM, end open watches (every agent keeps some) within 2 s; without it the API
		// server waits for them until it is killed.
		"--shutdown-watch-termination-grace-period=2s",
	}
	if c.Advertise != "" {
		args = append(args, "--advertise-address="+c.Advertise)
	} else {
		// The "kubernetes" Service would point at a loopback address, which Endpoints refuse.
		args = append(args, "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none")
	}
	mode := "--authorization-mode=RBAC"
	if k := c.Kubelets; k != nil {
		mode = "--authorization-mode=Node,RBAC"
		args = append(args, "--kubelet-client-certificate="+k.CertPath, "--kubelet-client-key="+k.KeyPath,
			"--kubelet-preferred-address-types=InternalIP,Hostname")
	}
	if c.AuthorizationConfig != "" {
		mode = "--authorization-config=" + c.AuthorizationConfig
	}
	args = append(args, mode)
	if c.AuthenticationConfig != "" {
		args = append(args, "--authentication-config="+c.AuthenticationConfig)
	}
	if c.EtcdTLS.CAFile != "" {
		args = append(args, "--etcd-cafile="+c.EtcdTLS.CAFile)
	}
	if c.EtcdTLS.CertFile != "" {
		args = append(args, "--etcd-certfile="+c.EtcdTLS.CertFile, "--etcd-keyfile="+c.EtcdTLS.KeyFile)
	}
	return append(args, c.Extra...)
}

// ControllerManagerConfig is the configuration of one kube-controller-manager.
type ControllerManagerConfig struct {
	// Kubeconfig of the controller-manager's identity (PKI.ControllerManager).
	Kubeconfig string
	PKI        *PKI
	// Controllers is the --controllers list, for example ["*", "-nodeipam"].
	Controllers []string
	Extra       []string
}

// Args are kube-controller-manager's command-line arguments. Each controller runs with its
// own service-account credentials, as kubeadm sets it up, so RBAC limits every one.
func (c ControllerManagerConfig) Args() []string {
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--controllers=" + strings.Join(c.Controllers, ","),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + c.PKI.ServiceAccountKey,
		"--root-ca-file=" + CACertPath(c.PKI.Dir),
		"--cluster-signing-cert-file=" + CACertPath(c.PKI.Dir),
		"--cluster-signing-key-file=" + CAKeyPath(c.PKI.Dir),
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
		"--kube-api-qps=200", "--kube-api-burst=400",
	}
	return append(args, c.Extra...)
}

// PKI is the certificate set of one control plane, kept in Dir.
type PKI struct {
	Dir               string
	CA                *CA
	Serving           KeyPair
	Admin             KeyPair
	ControllerManager KeyPair
	Scheduler         KeyPair
	ServiceAccountKey string
	ServiceAccountPub string
}

// EnsurePKI loads the control-plane PKI in dir, making whatever is missing: a CA named
// caName, the API server's serving certificate (for localhost and 127.0.0.1), client
// certificates for an admin (system:masters), the controller-manager and the scheduler, and
// the service-account signing key. A second call with the same dir changes nothing.
func EnsurePKI(dir, caName string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create PKI dir: %w", err)
	}
	ca, err := LoadOrCreateCA(dir, caName)
	if err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir, CA: ca}
	reqs := []struct {
		kp  *KeyPair
		req CertRequest
	}{
		{&p.Serving, CertRequest{Name: "apiserver", CommonName: "kube-apiserver", Server: true,
			DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			IPs:      loopbackAndServiceIPs()}},
		{&p.Admin, CertRequest{Name: "admin", CommonName: "convoy-admin", Organization: []string{"system:masters"}}},
		{&p.ControllerManager, CertRequest{Name: "controller-manager", CommonName: "system:kube-controller-manager"}},
		{&p.Scheduler, CertRequest{Name: "scheduler", CommonName: "system:kube-scheduler"}},
	}
	for _, r := range reqs {
		if *r.kp, err = ca.LoadOrIssue(dir, r.req); err != nil {
			return nil, err
		}
	}
	if p.ServiceAccountKey, p.ServiceAccountPub, err = LoadOrCreateSigningKey(dir, "sa"); err != nil {
		return nil, err
	}
	return p, nil
}

// FleetGateway is the host's address on the fleet network of real nodes (see internal/node),
// at which pods reach the host's API servers: serving certificates name it.
const FleetGateway = "10.77.0.1"

func loopbackAndServiceIPs() []net.IP {
	return []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv4(10, 96, 0, 1).To4(), net.ParseIP(FleetGateway).To4()}
}

package hub

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// datastoreKind says who serves the API server's storage.
type datastoreKind int

const (
	// viaKine: kine translates the etcd API to SQL (SQLite, Postgres, MySQL) or NATS.
	viaKine datastoreKind = iota
	// directEtcd: the API server talks to an etcd cluster itself.
	directEtcd
)

// datastore is a parsed --datastore-endpoint.
type datastore struct {
	kind datastoreKind
	// endpoint is what kine gets (viaKine), or the etcd URLs (directEtcd).
	endpoint string
	// etcd lists the etcd URLs for directEtcd.
	etcd []string
	// dial lists host:port pairs that must accept connections before we start anything.
	dial []string
}

var mysqlAddr = regexp.MustCompile(`@tcp\(([^)]+)\)`)

// parseDatastore reads --datastore-endpoint. An empty endpoint is kine on SQLite at sqlite.
func parseDatastore(endpoint, sqlite string) (datastore, error) {
	if endpoint == "" {
		return datastore{kind: viaKine, endpoint: sqlite}, nil
	}
	scheme, _, ok := strings.Cut(endpoint, "://")
	if !ok {
		return datastore{}, fmt.Errorf("datastore endpoint %q has no scheme; use sqlite://PATH, postgres://USER:PASS@HOST:PORT/DB, mysql://USER:PASS@tcp(HOST:PORT)/DB or an etcd URL such as http://HOST:2379", redact(endpoint))
	}
	switch scheme {
	case "sqlite", "nats":
		return datastore{kind: viaKine, endpoint: endpoint}, nil
	case "postgres", "postgresql":
		u, err := url.Parse(endpoint)
		if err != nil {
			return datastore{}, fmt.Errorf("datastore endpoint %s: %w", redact(endpoint), err)
		}
		return datastore{kind: viaKine, endpoint: endpoint, dial: []string{hostPort(u.Host, "5432")}}, nil
	case "mysql":
		ds := datastore{kind: viaKine, endpoint: endpoint}
		if m := mysqlAddr.FindStringSubmatch(endpoint); m != nil {
			ds.dial = []string{hostPort(m[1], "3306")}
		}
		return ds, nil
	case "http", "https":
		ds := datastore{kind: directEtcd, endpoint: endpoint}
		for e := range strings.SplitSeq(endpoint, ",") {
			u, err := url.Parse(strings.TrimSpace(e))
			if err != nil || u.Host == "" {
				return datastore{}, fmt.Errorf("datastore endpoint %q is not a list of etcd URLs such as http://10.0.0.1:2379,http://10.0.0.2:2379", redact(endpoint))
			}
			ds.etcd = append(ds.etcd, u.Scheme+"://"+u.Host)
			ds.dial = append(ds.dial, hostPort(u.Host, "2379"))
		}
		return ds, nil
	default:
		return datastore{}, fmt.Errorf("datastore endpoint scheme %q is not supported; use sqlite://, postgres://, mysql://, nats://, or an etcd URL (http:// or https://)", scheme)
	}
}

func hostPort(host, defaultPort string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(host, defaultPort)
}

// preflight checks that every server the datastore needs accepts connections, so that a
// mistyped or stopped database is reported at once, before any child starts.
func (d datastore) preflight(ctx context.Context) error {
	for _, addr := range d.dial {
		var dialer net.Dialer
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := dialer.DialContext(cctx, "tcp", addr)
		cancel()
		if err != nil {
			return fmt.Errorf("datastore %s is not reachable at %s: %w; start the database or fix --datastore-endpoint", redact(d.endpoint), addr, err)
		}
		conn.Close()
	}
	return nil
}

var userinfo = regexp.MustCompile(`://([^:@/]+):([^@/]*)@`)

// redact hides the password in a datastore endpoint, for logs and errors.
func redact(endpoint string) string {
	return userinfo.ReplaceAllString(endpoint, "://$1:***@")
}

package edge

import (
	"fmt"
	"strings"
	"time"
)

// Options are where one HAProxy instance of a pool keeps its things, and how it checks.
type Options struct {
	// Bind is the address the listeners bind (their ports are the pool's).
	Bind string
	// Socket is the Runtime API's unix socket (level admin, listeners passed on reload).
	Socket string
	// StateFile is the server-state file: the supervisor writes `show servers state` to it
	// before a reload, and the new workers start from it, so that changes made through the
	// Runtime API (addresses, weights, maintenance, health) survive the reload.
	StateFile string
	// Metrics is the HOST:PORT where HAProxy's Prometheus exporter serves /metrics; empty
	// serves none. Each instance has its own, so that a scrape sees one instance.
	Metrics string
	// CheckInterval is how often each server is checked; zero means 1 s. A server is taken
	// out after two failed checks, or five failed live requests in a row.
	CheckInterval time.Duration
}

// unusedAddr is where an unused server slot points, in maintenance: nothing is sent there.
const unusedAddr = "127.0.0.1:9"

// Render is the HAProxy configuration of a pool whose servers sit in slots (Assign). The same
// input gives the same text.
func Render(p Pool, slots Slots, o Options) string {
	check := o.CheckInterval
	if check == 0 {
		check = time.Second
	}
	var b strings.Builder
	w := func(indent bool, format string, args ...any) {
		if indent {
			b.WriteString("    ")
		}
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	w(false, "# Edge pool %s, rendered by Convoy (internal/edge): edits are overwritten.", p.Name)
	w(false, "global")
	w(true, "stats socket %s mode 600 level admin expose-fd listeners", o.Socket)
	w(true, "server-state-file %s", o.StateFile)
	if p.Limits.MaxConnections > 0 {
		w(true, "maxconn %d", p.Limits.MaxConnections)
	}
	w(false, "")
	w(false, "defaults")
	w(true, "mode http")
	w(true, "load-server-state-from-file global")
	w(true, "timeout connect 2s")
	w(true, "timeout client 60s")
	w(true, "timeout server %dms", DefaultTimeout.Milliseconds())
	// An upgraded connection (WebSocket) or a stream that idles is not a stalled answer.
	w(true, "timeout tunnel 1h")
	w(true, "timeout http-request 10s")
	w(true, "timeout check %dms", max(check.Milliseconds(), 100))
	// A request that failed before its answer began goes to another server, up to three
	// times: a connection refused or reset, or a safe request that got 502-504 or nothing.
	w(true, "retries 3")
	w(true, "option redispatch 1")
	w(true, "default-server inter %dms fall 2 rise 2", check.Milliseconds())
	if o.Metrics != "" {
		w(false, "")
		w(false, "frontend metrics")
		w(true, "bind %s", o.Metrics)
		w(true, "http-request use-service prometheus-exporter if { path /metrics }")
		w(true, "http-request return status 404")
	}
	if p.Limits.RequestsPerSecond > 0 {
		// It counts the requests let through only: one that is refused does not hold back
		// the next second's.
		w(false, "")
		w(false, "backend rate")
		w(true, "stick-table type integer size 1 expire 2s store gpc0_rate(1s)")
	}
	for _, l := range p.Listeners {
		w(false, "")
		w(false, "frontend fe:%s", l.Name)
		w(true, "bind %s:%d", o.Bind, l.Port)
		if l.Protocol == TCP {
			w(true, "mode tcp")
			w(true, "timeout client 1h") // a database connection may idle long
			if len(l.Routes) == 0 {
				w(true, "tcp-request connection reject")
				continue
			}
			w(true, "default_backend %s", backendName(l.Routes[0].Name))
			continue
		}
		w(true, "option forwardfor")
		if p.Limits.RequestsPerSecond > 0 {
			w(true, "http-request track-sc0 int(1) table rate")
			w(true, "http-request deny deny_status 429 if { sc_gpc0_rate(0,rate) ge %d }", p.Limits.RequestsPerSecond)
			w(true, "http-request sc-inc-gpc0(0)")
		}
		for i, r := range l.Routes {
			var conds []string
			if hosts := r.Hostnames; len(hosts) > 0 {
				for _, h := range hosts {
					if suffix, ok := strings.CutPrefix(h, "*"); ok {
						w(true, "acl r%d_host req.hdr(host),field(1,:),lower -m end %s", i, strings.ToLower(suffix))
					} else {
						w(true, "acl r%d_host req.hdr(host),field(1,:),lower -m str %s", i, strings.ToLower(h))
					}
				}
				conds = append(conds, fmt.Sprintf("r%d_host", i))
			}
			if prefix := strings.TrimSuffix(r.PathPrefix, "/"); prefix != "" {
				w(true, "acl r%d_path path -m str %s", i, prefix)
				w(true, "acl r%d_path path -m beg %s/", i, prefix)
				conds = append(conds, fmt.Sprintf("r%d_path", i))
			}
			if len(conds) == 0 {
				w(true, "use_backend %s", backendName(r.Name))
				continue
			}
			w(true, "use_backend %s if %s", backendName(r.Name), strings.Join(conds, " "))
		}
		w(true, "default_backend none")
	}
	for _, l := range p.Listeners {
		for _, r := range l.Routes {
			name := backendName(r.Name)
			w(false, "")
			w(false, "backend %s", name)
			if l.Protocol == TCP {
				w(true, "mode tcp")
				w(true, "timeout server 1h")
			} else {
				// Only safe requests are retried after they were sent; any request is retried
				// when it could not be sent.
				w(true, "retry-on conn-failure empty-response response-timeout 502 503 504")
				if r.Timeout > 0 {
					w(true, "timeout server %dms", r.Timeout.Milliseconds())
				}
				w(true, "http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS")
			}
			w(true, "balance roundrobin")
			if r.Backend.HealthPath != "" && l.Protocol == HTTP {
				w(true, "option httpchk")
				w(true, "http-check send meth GET uri %s", r.Backend.HealthPath)
				// Any answer but a server error says the app is alive.
				w(true, "http-check expect rstatus ^[234]")
			}
			observe := ""
			if l.Protocol == HTTP {
				observe = " observe layer7 error-limit 5 on-error mark-down"
			}
			for _, c := range sortedClusters(r.Backend) {
				for i, s := range slots[name][c.Cluster] {
					if !s.Addr.IsValid() { // checked too once it is given a server (Assign)
						w(true, "server %s %s disabled check%s", serverName(c.Cluster, i+1), unusedAddr, observe)
						continue
					}
					w(true, "server %s %s weight %d check%s", serverName(c.Cluster, i+1), s.Addr, s.Weight, observe)
				}
			}
		}
	}
	w(false, "")
	w(false, "backend none")
	w(true, "http-request return status 404 content-type text/plain string \"no route\\n\"")
	return b.String()
}

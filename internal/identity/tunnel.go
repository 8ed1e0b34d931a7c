package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rancher/remotedialer"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
)

// Tunnel is an agent's side of cluster access: it keeps a tunnel open to the hub and serves
// what the hub sends over it with its own proxy to the member's API server.
type Tunnel struct {
	// URL is the hub's tunnel endpoint, wss://HUB/apis/proxy.convoy.dev/v1alpha1/clusters/NAME/attach.
	URL string
	// HubCA is the PEM certificate authority of the hub's API server.
	HubCA []byte
	// Token is the agent's current hub token (read at each connect).
	Token func() string
	// Member is the agent's own access to its member's API server; it must be allowed to
	// impersonate (users, groups, service accounts, user extras).
	Member *rest.Config
	// Backoff is the wait before the fails-th connect after a failure.
	Backoff func(fails int) time.Duration
	Log     *slog.Logger
}

// Run keeps the tunnel open until ctx ends, connecting again after each loss.
func (t *Tunnel) Run(ctx context.Context) error {
	handler, err := memberProxy(t.Member, t.Log)
	if err != nil {
		return fmt.Errorf("the tunnel's proxy to the member: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(t.HubCA) {
		return errors.New("the tunnel: the hub's CA is no PEM certificate")
	}
	wsURL := strings.Replace(strings.Replace(t.URL, "https://", "wss://", 1), "http://", "ws://", 1)
	l := newPipeListener()
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(l)
	defer srv.Close()
	dialer := &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, HandshakeTimeout: 15 * time.Second}
	// The hub may dial the member's API server through the agent's proxy, and nothing else.
	allow := func(proto, address string) bool { return proto == "tcp" && address == memberAddress }
	local := func(ctx context.Context, network, address string) (net.Conn, error) {
		if !allow(network, address) {
			return nil, fmt.Errorf("the hub may not dial %s %s", network, address)
		}
		return l.dial(ctx)
	}
	for fails := 0; ctx.Err() == nil; {
		token := t.Token()
		if token == "" {
			if !sleep(ctx, time.Second) {
				break
			}
			continue
		}
		opened := time.Now()
		err := remotedialer.ConnectToProxyWithDialer(ctx, wsURL, http.Header{"Authorization": {"Bearer " + token}}, allow, dialer, local,
			func(context.Context, *remotedialer.Session) error {
				t.Log.Info("tunnel to the hub open")
				return nil
			})
		if ctx.Err() != nil {
			break
		}
		if time.Since(opened) > time.Minute {
			fails = 0
		}
		fails++
		t.Log.Warn("tunnel to the hub lost; opening it again", "err", err, "fails", fails)
		if !sleep(ctx, t.Backoff(fails)) {
			break
		}
	}
	return nil
}

// memberProxy forwards the hub's requests to the member's API server with the agent's
// credentials, streams and upgrades (exec, attach, port-forward) included. The impersonation
// headers are the hub's; any credential the request carries is dropped for the agent's.
func memberProxy(cfg *rest.Config, log *slog.Logger) (http.Handler, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil || target.Host == "" {
		return nil, fmt.Errorf("the member's API server %q is no URL", cfg.Host)
	}
	if target.Scheme == "" {
		target.Scheme = "https"
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	tc, err := cfg.TransportConfig()
	if err != nil {
		return nil, err
	}
	tlsConfig, err := transport.TLSConfigFor(tc)
	if err != nil {
		return nil, err
	}
	// Upgrades go over HTTP/1.1 connections of their own, with the agent's credentials added
	// to the request as client-go adds them.
	conn := utilnet.SetOldTransportDefaults(&http.Transport{TLSClientConfig: tlsConfig,
		DialContext: (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext})
	upgrader, err := transport.HTTPWrappersForConfig(tc, proxy.MirrorRequest)
	if err != nil {
		return nil, err
	}
	upgrade := proxy.NewUpgradeRequestRoundTripper(conn, upgrader)
	base := strings.TrimSuffix(target.Path, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Authorization")
		loc := *target
		loc.Path = base + r.URL.Path
		loc.RawQuery = r.URL.RawQuery // an upgrade's request takes only the location's
		h := proxy.NewUpgradeAwareHandler(&loc, rt, false, false, errorResponder{log})
		h.UpgradeTransport = upgrade
		h.UseLocationHost = true
		h.FlushInterval = -1
		h.ServeHTTP(w, r)
	}), nil
}

// errorResponder keeps the reason a request could not reach the member in the agent's log:
// addresses and TLS details are not for whoever asked through the hub.
type errorResponder struct{ log *slog.Logger }

func (e errorResponder) Error(w http.ResponseWriter, r *http.Request, err error) {
	e.log.Warn("cannot reach the member's API server for the hub", "path", r.URL.Path, "err", err)
	http.Error(w, "the agent cannot reach its cluster's API server; its log says why", http.StatusBadGateway)
}

// pipeListener hands the agent's proxy the connections the hub dials through the tunnel, as
// in-memory pipes: the proxy listens on no port.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	return nil, errors.New("the agent's proxy is closed")
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return memberAddress }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package kubeproc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// tailBytes is how much of a child's log a readiness error quotes.
const tailBytes = 1500

// WaitTCP waits until addr accepts TCP connections. If proc is not nil, the error on timeout
// quotes the end of its log.
func WaitTCP(ctx context.Context, addr string, proc *Process, timeout time.Duration) error {
	return poll(ctx, proc, timeout, func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// WaitHTTP waits until url answers GET with 200 (a child's health endpoint on loopback). If
// proc is not nil, the error on timeout quotes the end of its log.
func WaitHTTP(ctx context.Context, url string, proc *Process, timeout time.Duration) error {
	return poll(ctx, proc, timeout, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", url, resp.Status)
		}
		return nil
	})
}

// WaitAPIServer waits until the API server of cfg answers GET /readyz with 200.
func WaitAPIServer(ctx context.Context, cfg *rest.Config, proc *Process, timeout time.Duration) error {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("build readiness client: %w", err)
	}
	return poll(ctx, proc, timeout, func(ctx context.Context) error {
		return CheckReadyz(ctx, hc, cfg.Host)
	})
}

// CheckReadyz asks the API server at host once whether it is ready.
func CheckReadyz(ctx context.Context, hc *http.Client, host string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(host, "/")+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("readyz answered %d: %s", resp.StatusCode, failedChecks(string(body)))
}

// failedChecks keeps the "[-]... failed" lines of a readyz answer.
func failedChecks(body string) string {
	var failed []string
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "[-]") {
			failed = append(failed, strings.TrimPrefix(line, "[-]"))
		}
	}
	if len(failed) == 0 {
		return strings.TrimSpace(body)
	}
	return strings.Join(failed, "; ")
}

func poll(ctx context.Context, proc *Process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if proc == nil {
				return fmt.Errorf("not ready after %s: %w", timeout, last)
			}
			st := proc.Status()
			msg := fmt.Sprintf("%s not ready after %s (restarts %d", proc.Name(), timeout, st.Restarts)
			if st.LastExit != "" {
				msg += ", last exit: " + st.LastExit
			}
			return fmt.Errorf("%s): %w\n--- last lines of %s ---\n%s", msg, last, proc.spec.LogPath, proc.Tail(tailBytes))
		case <-tick.C:
		}
	}
}

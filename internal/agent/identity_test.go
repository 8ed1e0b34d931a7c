package agent

import (
	"errors"
	"fmt"
	"testing"

	"github.com/convoy-dev/convoy/internal/delivery"
)

// TestAfterJoin is the agent's choice after a join on the hub's delivery port failed: ask the
// API server, give up the identity, or retry.
func TestAfterJoin(t *testing.T) {
	notReady := errors.New("the hub's caches are not ready")
	refused := fmt.Errorf("%w: unauthenticated", delivery.ErrRefused)
	noJoin := fmt.Errorf("%w: cannot set up a connection to 127.0.0.1:1", delivery.ErrNoJoin)
	for _, tc := range []struct {
		name      string
		err       error
		bootstrap bool
		want      error // nil: ask the API server
	}{
		{"bootstrap token refused: the API server decides", refused, true, nil},
		{"renewal refused: revoked", refused, false, ErrRevoked},
		{"no joins served, bootstrap", noJoin, true, nil},
		{"no joins served, renewal", noJoin, false, nil},
		{"hub not ready: retried as it is", notReady, true, notReady},
		{"hub not ready on renewal: retried as it is", notReady, false, notReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := afterJoin(tc.err, tc.bootstrap)
			switch {
			case tc.want == nil && got != nil:
				t.Errorf("afterJoin = %v, want nil (ask the API server)", got)
			case tc.want != nil && !errors.Is(got, tc.want):
				t.Errorf("afterJoin = %v, want %v", got, tc.want)
			}
		})
	}
}

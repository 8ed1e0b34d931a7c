// Package delivery is the connection between the hub and its agents: one long-lived gRPC
// stream per agent (Delivery.Sync), served by the hub process next to its API server, with the
// messages of api/v1alpha1/delivery.go as JSON.
//
// The agent (Client) authenticates with its ServiceAccount token and says its cluster; the hub
// (Server) checks the token (with its API server's signing key, or a TokenReview; cached) and
// that it is the cluster's current agent identity; the latter again every 2 s while the stream
// lasts (at the agent's next message), so a revocation cuts the stream. Every message is a
// heartbeat: the Server keeps each cluster's last one in memory (LastSeen), for the
// Cluster controller, instead of a Lease written every interval. Works' status comes back as
// reports, folded in memory (Overlay answers with the latest); the Persister stores them in the
// Works at a bounded rate, so that a change of a thousand Works' status costs the Placement's
// controller one reconcile and the datastore a paced trickle, not a thousand writes at once.
// The cluster's inventory comes the same way (Inventory answers with the latest), and the
// Cluster controller stores it with its verdict. Down the stream go the cluster's Works, to an
// agent that asks (works.go): all of them from the hub's cache when the stream opens, then each
// change (WorkChanged), so that agents neither list nor watch Works through the hub's API.
// A Work's new content may be handed to the Server ahead of its stored write (Hand, in
// pending.go): the streams send it at once and the Writer stores it at a paced rate, one write
// per generation. Stats counts what the streams carry. An agent may also join on the same
// port (Delivery.Join, join.go): the hub's Enrollment trades its bootstrap token, or renews its
// token, from the hub's cache and the API server's signing key, and the stream then uses the
// join's connection.
//
// The hub's composition root and the agent import it; the controllers see the fold only through
// their own small interfaces.
package delivery

import (
	"encoding/json"

	"google.golang.org/grpc"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// codec carries the stream's messages as JSON: they are the API package's plain Go types, so
// neither side needs generated code, and either may add fields the other ignores.
type codec struct{}

func (codec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (codec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (codec) Name() string                       { return "json" }

// syncMethod is the full gRPC method name of the stream.
const syncMethod = "/" + v1alpha1.DeliveryService + "/" + v1alpha1.DeliverySync

// joinMethod is the full name of the unary join (v1alpha1.DeliveryJoin).
const joinMethod = "/" + v1alpha1.DeliveryService + "/" + v1alpha1.DeliveryJoin

// streamDesc describes the one bidirectional stream.
var streamDesc = grpc.StreamDesc{StreamName: v1alpha1.DeliverySync, ClientStreams: true, ServerStreams: true}

// maxMessage bounds one message; a reconnecting agent's reports go in several, of at most
// reportsPerMessage reports each.
const (
	maxMessage        = 16 << 20
	reportsPerMessage = 64
	// connBuffer is each connection's read and write buffer (gRPC's default is 32 KiB each,
	// 64 MiB for a thousand agents).
	connBuffer = 8 << 10
	// flowWindow is each stream's and connection's flow-control window, on both sides (gRPC's
	// lower bound is 64 KiB; a fixed one turns off its bandwidth-estimating pings).
	flowWindow = 1 << 20
)

package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// The delivery connection between the hub and an agent (internal/delivery): one long-lived
// gRPC stream per agent, served by the hub process next to its API server. The agent
// authenticates with its ServiceAccount token, heartbeats on the stream, and reports its
// Works' status and its cluster's inventory on it; the hub folds the reports in memory and
// stores them in batches, so that neither a heartbeat nor a status report is a write to the
// hub's datastore of its own.
//
// The messages below travel as JSON (the stream's codec is "json"); both sides must accept
// fields they do not know, so that either may be newer.
const (
	// DeliveryService is the stream's gRPC service, and DeliverySync its one method.
	DeliveryService = "convoy.delivery.v1alpha1.Delivery"
	DeliverySync    = "Sync"
	// DeliveryJoin is the service's unary method by which an agent gets a token of its
	// cluster's ServiceAccount from the hub process (JoinRequest, JoinResponse): with a
	// bootstrap token to join, or its current token to renew it. It answers what the hub's API
	// server would (the agent-config's settings and a token request), from the hub's cache and
	// its service-account signing key, so that an agent that joins makes no request to the
	// API server, and on the connection its stream then uses.
	DeliveryJoin = "Join"
	// AgentConfigDeliveryPort is the key of the agent's ConfigMap (AgentConfigMap) that gives
	// the port of the hub's delivery stream, on the host of the hub's API server. An agent
	// whose ConfigMap has none renews its Lease and writes its Works' status itself.
	AgentConfigDeliveryPort = "deliveryPort"
)

// AgentMessage is what an agent sends on its stream. The first one carries Hello; every one
// counts as a heartbeat, so an agent with nothing to report sends an empty one each interval.
type AgentMessage struct {
	// Hello opens the stream.
	Hello *DeliveryHello `json:"hello,omitempty"`
	// Reports are Works' status, the latest of each: after the hello every Work the agent
	// has reported since it started (in as many messages as it takes), then changes.
	Reports []WorkReport `json:"reports,omitempty"`
	// Inventory is the cluster's inventory, when it changed (and in the hello's message, the
	// latest): the hub writes it into the Cluster's status with its verdict, in one write,
	// instead of the agent's own write of it.
	Inventory *Inventory `json:"inventory,omitempty"`
}

// DeliveryHello names the agent's cluster; the hub checks it against the token's identity.
type DeliveryHello struct {
	Cluster string `json:"cluster"`
	Version string `json:"version,omitempty"`
	// Works names every Work whose report the agent holds, and that it sends next: the hub
	// forgets what it holds of the cluster's other Works (an agent that restarted knows
	// nothing of them; their stored status is what it knows too).
	Works []string `json:"works,omitempty"`
	// Probe asks only whether the hub takes the identity: the hub answers and ends the
	// stream, and counts no heartbeat.
	Probe bool `json:"probe,omitempty"`
	// WatchWorks asks the hub to send the cluster's Works on the stream (HubMessage's
	// Works), instead of the agent watching them through the hub's API.
	WatchWorks bool `json:"watchWorks,omitempty"`
}

// WorkReport is one Work's status as the agent sees it.
type WorkReport struct {
	// Work is the Work's name in the cluster's namespace, and UID its uid: a report of a Work
	// that was deleted and made again under the same name is not taken for the new one.
	Work string `json:"work"`
	UID  string `json:"uid"`
	// Gone says the agent forgot the Work (it was deleted): the hub drops its report.
	Gone   bool       `json:"gone,omitempty"`
	Status WorkStatus `json:"status"`
}

// HubMessage is what the hub sends on a stream.
type HubMessage struct {
	// HeartbeatInterval (a Go duration) is how often the agent must send a message; the hub
	// counts the cluster Unreachable after its grace without one. Every HubMessage has it.
	HeartbeatInterval string `json:"heartbeatInterval"`
	// Inventory says the hub stores the inventory that comes on the stream; an agent whose
	// hub does not (an older one) writes its inventory itself.
	Inventory bool `json:"inventory,omitempty"`
	// SendsWorks, in the first message, says the hub sends the cluster's Works on this
	// stream, as the hello's WatchWorks asked; an agent whose hub does not (an older one, or
	// one that was not asked) watches them through the hub's API.
	SendsWorks bool `json:"sendsWorks,omitempty"`

	// The cluster's Works, as the hub's cache holds them (without managedFields), with the
	// content handed ahead of its write where there is some (see WorksReset). After the
	// first message the hub sends all of them, from a message with WorksBegin to one with
	// WorksEnd (the same message when they fit in one), then each Work again when it changes,
	// and the names of those that are gone from the hub. Only a complete set (WorksEnd) says
	// that a Work it does not list is gone; a stream that ends before it says nothing.
	WorksBegin bool     `json:"worksBegin,omitempty"`
	Works      []Work   `json:"works,omitempty"`
	WorksGone  []string `json:"worksGone,omitempty"`
	WorksEnd   bool     `json:"worksEnd,omitempty"`
	// WorksReset names Works of this message that the agent takes even if it holds a newer
	// generation: the hub handed that one ahead of its write and will not store it (its
	// write was refused or conflicted, or a restarted hub found that what is stored is what
	// it wants). Without it an agent never goes back to an older generation of a Work.
	WorksReset []string `json:"worksReset,omitempty"`
}

// JoinRequest asks for a token of the cluster's agent ServiceAccount (DeliveryJoin). The
// request's bearer token is a bootstrap token of the cluster's current credential generation,
// or a token of its current ServiceAccount.
type JoinRequest struct {
	Cluster string `json:"cluster"`
	// ExpirationSeconds is the lifetime the agent asks for; the hub may give a shorter one.
	ExpirationSeconds int64 `json:"expirationSeconds,omitempty"`
}

// JoinResponse is the hub's answer to a JoinRequest.
type JoinResponse struct {
	// Token is a ServiceAccount token, as the hub's API server would issue it, valid until
	// Expires.
	Token   string      `json:"token"`
	Expires metav1.Time `json:"expires"`
	// Settings are the agent-config's data (AgentConfigMap): the ServiceAccount, the
	// heartbeat interval, the delivery port.
	Settings map[string]string `json:"settings,omitempty"`
}

// Package identity owns cluster access through the hub (issue 17): the hub's side, an
// aggregated API (v1alpha1.ProxyGroup) that takes each agent's tunnel (rancher/remotedialer
// over a WebSocket through the hub's API server) and forwards people's requests to a member's
// API server over it, impersonating them and auditing each; and the agent's side, which keeps
// the tunnel open and lets the hub dial nothing but its in-process proxy to the member's API
// server, which adds the agent's own credentials. The hub and the agent import it.
package identity

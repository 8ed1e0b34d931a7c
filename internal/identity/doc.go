// Package identity owns who people are across the fleet (issue 17).
//
//   - The hub's OpenID Connect issuer (Issuer, on zitadel/oidc's op package): the device flow
//     and the authorization code flow with PKCE for `convoy login`, refresh tokens, signing
//     keys that rotate without logging anyone out, and a Connector that checks sign-ins (Users:
//     the hub's User objects, bcrypt).
//   - The client side of a sign-in (DeviceLogin, BrowserLogin, Session, TokenCache), for
//     `convoy login`, `convoy logout` and the exec credential plugin `convoy auth token`.
//   - Cluster access through the hub: the hub's side, an aggregated API
//     (v1alpha1.ProxyGroup) that takes each agent's tunnel (rancher/remotedialer over a
//     WebSocket through the hub's API server) and forwards people's requests to a member's API
//     server over it, impersonating them and auditing each; and the agent's side, which keeps
//     the tunnel open and lets the hub dial nothing but its in-process proxy to the member's
//     API server, which adds the agent's own credentials.
//
// The hub, the agent and the CLI import it.
package identity

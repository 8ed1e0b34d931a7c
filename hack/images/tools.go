//go:build tools

// Package images pins the upstream programs that Convoy runs in pods on real nodes, and so
// builds statically: CoreDNS (./coredns, with the plugins a cluster's DNS uses) and Rancher's
// local-path-provisioner. hack/tools.sh builds them; the product module never imports this.
package images

import _ "github.com/rancher/local-path-provisioner"

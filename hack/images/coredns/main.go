// Command coredns is CoreDNS with the plugins a cluster's DNS uses and no others, the way
// CoreDNS documents building it with a plugin set of one's own: the kubeadm Corefile's plugins
// (errors, health, ready, kubernetes, prometheus, forward, cache, loop, reload, loadbalance)
// and log. hack/tools.sh builds it statically into bin/images/, and Convoy packs it into the
// CoreDNS image of every cluster with real nodes.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// directives are the plugins in the order a request passes them (CoreDNS's plugin.cfg order).
var directives = []string{
	"reload", "health", "ready", "prometheus", "errors", "log", "loadbalance", "cache",
	"loop", "kubernetes", "forward",
}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }

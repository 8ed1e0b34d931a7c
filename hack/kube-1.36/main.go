// Command kube is Kubernetes v1.36's member-cluster programs in one multi-call binary, the
// older of the two versions Convoy's upgrade path runs (the newer one is hack/kube). It is
// built only by hack/tools.sh (make tools), into bin/v1.36.3/kube, with one link of its own
// name per program beside it; the name it is run by picks the program, as hyperkube did.
// Only what a local cluster runs is here: the control plane, the kubelet and kube-proxy.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones, as kube-controller-manager's own main has it

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	programs := map[string]func() *cobra.Command{
		"kube-apiserver":          apiserver.NewAPIServerCommand,
		"kube-controller-manager": controllermanager.NewControllerManagerCommand,
		"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
		"kube-proxy":              proxy.NewProxyCommand,
		"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	}
	name := filepath.Base(os.Args[0])
	newCommand, ok := programs[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "kube: run me through a link named kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy or kubelet, not %q\n", name)
		os.Exit(2)
	}
	os.Exit(cli.Run(newCommand()))
}

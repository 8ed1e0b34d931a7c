package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/logship"
)

func newLogCollectorCmd(g *globals) *cobra.Command {
	var hubURL, caFile, tokenFile, node, stateDir, linkDir string
	var rateLimit int
	cmd := &cobra.Command{
		Use:   "log-collector --hub-url URL --ca-file FILE --token-file FILE --node NAME --state-dir DIR",
		Short: "Follow this node's container logs and send them to the hub (run by the agent, in a DaemonSet)",
		Long: `Follow the log file of every container of this node's pods and send each line to the hub's
log store, with the pod's namespace, name, container, node and labels. The agent runs it on
every real node of its member (a DaemonSet in convoy-system); it uses the in-cluster
configuration to list the node's pods, and --state-dir to remember how far it sent each file.`,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for flag, v := range map[string]string{"hub-url": hubURL, "ca-file": caFile, "token-file": tokenFile, "node": node, "state-dir": stateDir} {
				if v == "" {
					return usageError("--%s is required", flag)
				}
			}
			ca, err := os.ReadFile(caFile)
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
			}
			if err := os.MkdirAll(stateDir, 0o700); err != nil {
				return err
			}
			cfg, err := rest.InClusterConfig()
			if err != nil {
				return fmt.Errorf("the member's API server: %w", err)
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = "spec.nodeName=" + node
			}))
			pods := f.Core().V1().Pods()
			changed := make(chan struct{}, 1)
			poke := func(any) {
				select {
				case changed <- struct{}{}:
				default:
				}
			}
			if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
			}); err != nil {
				return err
			}
			f.Start(ctx.Done())
			if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced) {
				return ctx.Err()
			}
			s := &logship.Shipper{
				LinkDir:   linkDir,
				StateFile: filepath.Join(stateDir, "positions.json"),
				Containers: func() []logship.Container {
					list, _ := pods.Lister().List(labels.Everything())
					return logship.PodContainers(list)
				},
				Changed: changed,
				Send: logship.HTTPSender{URL: hubURL, TokenFile: tokenFile, Client: &http.Client{
					Timeout:   30 * time.Second,
					Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true},
				}}.Send,
				Rate: rateLimit,
				Log:  g.log,
			}
			g.log.Info("following this node's container logs", "node", node, "hub", hubURL)
			return s.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&hubURL, "hub-url", "", "the hub's log insert endpoint, https://HUB"+v1alpha1.LogsInsertPath)
	f.StringVar(&caFile, "ca-file", "", "the hub's CA certificate (PEM)")
	f.StringVar(&tokenFile, "token-file", "", "a file holding the bearer token to send with; read again for every request")
	f.StringVar(&node, "node", "", "this node's name: only its pods' logs are followed")
	f.StringVar(&stateDir, "state-dir", "", "where to remember how far each log file was sent")
	f.StringVar(&linkDir, "link-dir", "/var/log/containers", "where the kubelet links each container's log file")
	f.IntVar(&rateLimit, "rate", 0, "the most to send, in compressed bytes a second (0: no bound)")
	return cmd
}

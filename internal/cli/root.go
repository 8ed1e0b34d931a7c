// Package cli is Convoy's command tree, built with cobra. Commands write only to the streams
// they are given, so tests run them in-process. One file per noun; only cmd/convoy imports it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// IOStreams are the standard streams a command uses.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// globals are the flags every command has.
type globals struct {
	streams       IOStreams
	kubeconfig    string
	hubKubeconfig string
	logLevel      string
	log           *slog.Logger
}

// Run executes the command line args and returns the process exit code.
func Run(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	g := &globals{streams: IOStreams{In: in, Out: out, ErrOut: errOut}}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(errOut, "error: %v\n", err)
		return 1
	}
	return 0
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "convoy",
		Short: "Convoy manages a fleet of identical Kubernetes clusters as one system",
		Long: `Convoy manages a fleet of identical Kubernetes clusters as one system.

The hub (convoy hub) stores plain Kubernetes manifests and decides where they run;
an agent on each member cluster applies them and reports back.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setupLogging()
		},
	}
	root.PersistentFlags().StringVar(&g.kubeconfig, "kubeconfig", "", "kubeconfig of the hub (default $CONVOY_KUBECONFIG, else the default data dir's kubeconfig)")
	root.PersistentFlags().StringVar(&g.hubKubeconfig, "hub-kubeconfig", "", "the same as --kubeconfig, for commands whose --kubeconfig means another cluster (cluster import)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(
		newVersionCmd(g),
		newHubCmd(g),
		newGetCmd(g),
		newClusterCmd(g),
		newUpCmd(g),
		newDownCmd(g),
		newLocalRuntimeCmd(g),
		newAgentCmd(g),
		newApplyCmd(g),
		newStatusCmd(g),
		newRolloutCmd(g),
		newProfileCmd(g),
		newImageCmd(g),
		newEdgeCmd(g),
		newMetricsCmd(g),
		newLogsCmd(g),
		newLogCollectorCmd(g),
		newTopCmd(g),
		newLoginCmd(g),
		newLogoutCmd(g),
		newAuthCmd(g),
		newUserCmd(g),
		newCatalogCmd(g),
		newPackageCmd(g),
	)
	return root
}

// setupLogging makes the structured logger and routes the logs of client-go (klog) and
// controller-runtime to it. This is the one place those global loggers are set.
func (g *globals) setupLogging() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	g.log = slog.New(slog.NewTextHandler(g.streams.ErrOut, &slog.HandlerOptions{Level: level}))
	klog.SetSlogLogger(g.log.With("logger", "client-go"))
	ctrllog.SetLogger(logr.FromSlogHandler(g.log.Handler()))
	return nil
}

// routeTunnelLogs sends what rancher/remotedialer (the agent's tunnel) logs with logrus to
// the agent's log: its news of each connect at debug level, its failures as warnings. Only
// `convoy agent` calls it; in the hub the fleet registry routes logrus (registry.Start).
func routeTunnelLogs(log *slog.Logger) {
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.InfoLevel)
	logrus.AddHook(logrusHook{log.With("logger", "remotedialer")})
}

// logrusHook passes logrus entries to slog.
type logrusHook struct{ log *slog.Logger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	if e.Level <= logrus.WarnLevel {
		level = slog.LevelWarn
	}
	args := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		args = append(args, k, v)
	}
	h.log.Log(context.Background(), level, e.Message, args...)
	return nil
}

// usageError is an error about how a command was called.
func usageError(format string, args ...any) error {
	return errors.New(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

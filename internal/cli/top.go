package cli

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/convoy-dev/convoy/internal/observe"
)

func newTopCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show CPU, memory and pods per cluster or per workload, from the fleet metrics store",
		Long: `The figures are the fleet metrics store's (see convoy metrics): CPU is the pods' use over the
last two minutes, memory their working set, both as each cluster's kubelets measure them. A
cluster of simulated nodes has pods but no such figures ("-").`,
	}
	cmd.AddCommand(newTopClustersCmd(g), newTopWorkloadsCmd(g))
	return cmd
}

func newTopClustersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "clusters",
		Short: "CPU, memory, nodes and running pods of each cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.restConfig()
			if err != nil {
				return err
			}
			answers, err := queryAll(cmd, cfg, observe.TopClustersQueries)
			if err != nil {
				return err
			}
			rows := observe.TopClusters(answers)
			if len(rows) == 0 {
				fmt.Fprintln(g.streams.Out, "No cluster has sent metrics yet (convoy metrics query 'up' shows what the store holds).")
				return nil
			}
			tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLUSTER\tREGION\tNODES\tPODS\tCPU(cores)\tMEMORY(bytes)")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", r.Cluster, r.Region, r.Nodes, r.Pods, cores(r.CPU), bytesOf(r.Memory))
			}
			return tw.Flush()
		},
	}
}

func newTopWorkloadsCmd(g *globals) *cobra.Command {
	var namespace, cluster string
	var all bool
	cmd := &cobra.Command{
		Use:   "workloads",
		Short: "CPU, memory and pods of each workload in each cluster",
		Example: `  convoy top workloads -n demo
  convoy top workloads -A --cluster us-east`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all {
				namespace = ""
			} else if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
				return usageError("-n %q: not a namespace name: %s", namespace, errs[0])
			}
			cfg, err := g.restConfig()
			if err != nil {
				return err
			}
			answers, err := queryAll(cmd, cfg, observe.TopWorkloadsQueries(namespace, cluster))
			if err != nil {
				return err
			}
			rows := observe.TopWorkloads(answers)
			if len(rows) == 0 {
				where := "namespace " + namespace
				if all {
					where = "any namespace"
				}
				if cluster != "" {
					where += " of cluster " + cluster
				}
				fmt.Fprintf(g.streams.Out, "No pods in %s in the fleet metrics store.\n", where)
				return nil
			}
			printWorkloads(g.streams.Out, rows, all)
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of the workloads")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "workloads of every namespace")
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster's")
	return cmd
}

func printWorkloads(w io.Writer, rows []observe.WorkloadTop, namespaces bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if namespaces {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "WORKLOAD\tCLUSTER\tRUNNING\tCPU(cores)\tMEMORY(bytes)")
	for _, r := range rows {
		if namespaces {
			fmt.Fprint(tw, r.Namespace+"\t")
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%d/%d\t%s\t%s\n", r.Kind, r.Name, r.Cluster, r.Running, r.Pods, cores(r.CPU), bytesOf(r.Memory))
	}
	tw.Flush()
}

// queryAll runs each named instant query and reads its vector.
func queryAll(cmd *cobra.Command, cfg *rest.Config, queries map[string]string) (map[string][]observe.Sample, error) {
	names := make([]string, 0, len(queries))
	for n := range queries {
		names = append(names, n)
	}
	sort.Strings(names)
	out := map[string][]observe.Sample{}
	for _, n := range names {
		raw, err := queryHub(cmd, cfg, "query", url.Values{"query": {queries[n]}})
		if err != nil {
			return nil, err
		}
		if out[n], err = observe.ParseVector(raw); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// cores is CPU as kubectl top shows it (millicores), or "-" for none.
func cores(v float64) string {
	if v < 0 {
		return "-"
	}
	return strconv.FormatInt(int64(v*1000+0.5), 10) + "m"
}

// bytesOf is memory as kubectl top shows it (Mi), or "-" for none.
func bytesOf(v float64) string {
	if v < 0 {
		return "-"
	}
	q := resource.NewQuantity(int64(v)/(1<<20)*(1<<20), resource.BinarySI)
	return q.String()
}

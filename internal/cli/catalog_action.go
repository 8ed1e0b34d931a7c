package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// newCatalogActionCmd is `convoy catalog backup` and `restore`: they run a package's action
// (a CronJob of its chart labelled catalog.convoy.dev/action) as a Job, now, on each cluster
// the service runs on, through the hub's cluster proxy, and show what it said.
func newCatalogActionCmd(g *globals, action string) *cobra.Command {
	var namespace, backup string
	var clusters []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   action + " NAME",
		Short: "Back up a catalog service to its backup volume, now, on each of its clusters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env := map[string]string{}
			if action == "restore" {
				env["BACKUP"] = backup
			}
			return g.runAction(cmd.Context(), g.streams.Out, namespace, args[0], action, clusters, env, timeout)
		},
	}
	if action == "restore" {
		cmd.Short = "Restore a catalog service from a backup on its backup volume (the latest by default), on each of its clusters"
		cmd.Flags().StringVar(&backup, "backup", "latest", "the backup to restore, as convoy catalog backup named it")
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "the service's namespace")
	cmd.Flags().StringSliceVar(&clusters, "cluster", nil, "only these clusters (default: every cluster the service runs on)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for each cluster's job")
	return cmd
}

// LabelCatalogAction marks a package's action CronJobs.
const labelCatalogAction = "catalog.convoy.dev/action"

func (g *globals) runAction(ctx context.Context, out io.Writer, namespace, name, action string, only []string, env map[string]string, timeout time.Duration) error {
	c, err := g.hubClient()
	if err != nil {
		return err
	}
	var p v1alpha1.Placement
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &p); apierrors.IsNotFound(err) || (err == nil && p.Labels[v1alpha1.LabelCatalogPackage] == "") {
		return fmt.Errorf("no catalog service %s in namespace %s", name, namespace)
	} else if err != nil {
		return hubError("", err)
	}
	var where []string
	for _, s := range p.Status.Clusters {
		if len(only) == 0 || slices.Contains(only, s.Cluster) {
			where = append(where, s.Cluster)
		}
	}
	if len(where) == 0 {
		return fmt.Errorf("service %s/%s runs on none of the clusters %s", namespace, name, strings.Join(only, ", "))
	}
	cfg, err := g.restConfig()
	if err != nil {
		return err
	}
	var failed []string
	for _, cluster := range where {
		cs, err := throughHub(cfg, cluster)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "==> %s of %s/%s on %s\n", action, namespace, name, cluster)
		msg, err := runActionJob(ctx, cs, namespace, name, p.Labels[v1alpha1.LabelCatalogPackage], action, env, timeout)
		for l := range strings.Lines(msg) {
			fmt.Fprintf(out, "    %s", l)
		}
		if err != nil {
			fmt.Fprintf(out, "    failed: %v\n", err)
			failed = append(failed, cluster)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("the %s failed on %s", action, strings.Join(failed, ", "))
	}
	return nil
}

// runActionJob makes a Job of the action's CronJob on one cluster, waits for it and returns
// its pod's log.
func runActionJob(ctx context.Context, cs kubernetes.Interface, namespace, name, pkg, action string, env map[string]string, timeout time.Duration) (string, error) {
	sel := "app.kubernetes.io/instance=" + name + "," + labelCatalogAction + "=" + action
	cjs, err := cs.BatchV1().CronJobs(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return "", err
	}
	if len(cjs.Items) != 1 {
		return "", fmt.Errorf("package %s has no %s action here (no CronJob labelled %s=%s)", pkg, action, labelCatalogAction, action)
	}
	cj := cjs.Items[0]
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:        fmt.Sprintf("%.52s-%d", cj.Name, time.Now().Unix()), // at most 63
			Namespace:   namespace,
			Labels:      cj.Spec.JobTemplate.Labels,
			Annotations: map[string]string{"cronjob.kubernetes.io/instantiate": "manual"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID,
				Controller: new(true)}},
		},
		Spec: *cj.Spec.JobTemplate.Spec.DeepCopy(),
	}
	for i := range job.Spec.Template.Spec.Containers {
		ct := &job.Spec.Template.Spec.Containers[i]
		for k, v := range env {
			found := false
			for j := range ct.Env {
				if ct.Env[j].Name == k {
					ct.Env[j] = corev1.EnvVar{Name: k, Value: v}
					found = true
				}
			}
			if !found {
				ct.Env = append(ct.Env, corev1.EnvVar{Name: k, Value: v})
			}
		}
	}
	if job, err = cs.BatchV1().Jobs(namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var done, ok bool
	for !done {
		j, err := cs.BatchV1().Jobs(namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("job %s: %w", job.Name, err)
		}
		for _, cond := range j.Status.Conditions {
			if cond.Status == corev1.ConditionTrue && (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) {
				done, ok = true, cond.Type == batchv1.JobComplete
			}
		}
		if !done {
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("job %s has not finished after %s", job.Name, timeout)
			case <-time.After(time.Second):
			}
		}
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job.Name})
	logs := ""
	if err == nil && len(pods.Items) > 0 {
		slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
		raw, _ := cs.CoreV1().Pods(namespace).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		logs = string(raw)
	}
	if !ok {
		return logs, fmt.Errorf("job %s failed", job.Name)
	}
	return logs, nil
}

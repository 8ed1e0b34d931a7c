package kubeproc

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The host's inotify limits. Every Kubernetes program holds inotify instances (measured on
// v1.37: kube-apiserver 4 to 7, kube-controller-manager 5, kubelet 6, containerd, kube-proxy
// and Convoy's log collector 1 each), so a local cluster's control plane takes about 9 and each
// real node about 9 more. Linux counts them per user, and the fleet runs as root: at the
// kernel's default fs.inotify.max_user_instances of 128 a host holds about three clusters of two
// real nodes, and past that the kubelet and kube-proxy exit at start ("inotify_init: too many
// open files") and are restarted for ever. kind and k3s ask their users to raise the same limits.
const (
	// InotifyInstances is the fs.inotify.max_user_instances the fleet needs: about 450 clusters.
	InotifyInstances = 8192
	// InotifyWatches is the fs.inotify.max_user_watches it needs (the kubelet and the log
	// collectors watch a directory per pod and container).
	InotifyWatches = 524288
)

// RaiseInotifyLimits raises the host's inotify limits to at least InotifyInstances and
// InotifyWatches; it never lowers them. It returns what it changed, as "NAME FROM -> TO"; when
// it cannot write them (not root, or /proc/sys read-only) its error says which limits are low
// and the command that raises them.
func RaiseInotifyLimits() ([]string, error) {
	return raiseLimits("/proc/sys", map[string]int{
		"fs/inotify/max_user_instances": InotifyInstances,
		"fs/inotify/max_user_watches":   InotifyWatches,
	})
}

// raiseLimits raises each sysctl under procSys (a path relative to it) to at least its value.
func raiseLimits(procSys string, want map[string]int) ([]string, error) {
	var raised, low []string
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(want)) {
		path := filepath.Join(procSys, name)
		raw, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", path, err))
			continue
		}
		have, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %q is not a number", path, strings.TrimSpace(string(raw))))
			continue
		}
		if have >= want[name] {
			continue
		}
		key := strings.ReplaceAll(name, "/", ".")
		if err := os.WriteFile(path, []byte(strconv.Itoa(want[name])), 0o644); err != nil {
			low = append(low, fmt.Sprintf("%s=%d", key, want[name]))
			errs = append(errs, fmt.Errorf("%s is %d: %w", key, have, err))
			continue
		}
		raised = append(raised, fmt.Sprintf("%s %d -> %d", key, have, want[name]))
	}
	if len(low) > 0 {
		errs = append(errs, fmt.Errorf("the fleet's Kubernetes processes need higher inotify limits than these; raise them as root with `sysctl -w %s`", strings.Join(low, " ")))
	}
	return raised, errors.Join(errs...)
}

// EnsureInotifyLimits raises the limits (RaiseInotifyLimits) and logs what it changed, or why
// it could not: a host whose limits stay low still runs what fits in them.
func EnsureInotifyLimits(log *slog.Logger) {
	raised, err := RaiseInotifyLimits()
	for _, r := range raised {
		log.Info("raised the host's inotify limit for the fleet's processes", "limit", r)
	}
	if err != nil {
		log.Warn("the host's inotify limits are low; kubelets and API servers may fail to start", "err", err)
	}
}

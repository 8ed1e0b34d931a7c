package observe

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/convoy-dev/convoy/internal/logship"
)

// DefaultLogsRetention is how long the log store keeps lines unless told otherwise.
const DefaultLogsRetention = 7 * 24 * time.Hour

// LogStore is VictoriaLogs single-node as the hub runs it: on 127.0.0.1 only, behind a password
// that only the hub holds, its data in the hub's data dir, with a bounded retention.
type LogStore struct {
	DataDir string
	Port    int
	// Retention is how long lines are kept (whole days).
	Retention time.Duration
	// MemoryBytes bounds the store's caches.
	MemoryBytes int64
	// PasswordFile holds the password of StoreUser that the store asks of every request but
	// /health.
	PasswordFile string
}

// Args are the store's command-line flags.
func (s LogStore) Args() []string {
	args := []string{
		"-storageDataPath=" + s.DataDir,
		"-retentionPeriod=" + retentionDays(s.Retention, DefaultLogsRetention),
		"-httpListenAddr=127.0.0.1:" + strconv.Itoa(s.Port),
		"-loggerLevel=WARN",
	}
	if s.MemoryBytes > 0 {
		args = append(args, "-memory.allowedBytes="+strconv.FormatInt(s.MemoryBytes, 10))
	}
	if s.PasswordFile != "" {
		args = append(args, "-httpAuth.username="+StoreUser, "-httpAuth.password=file://"+s.PasswordFile)
	}
	return args
}

// The fields of a line in the log store: what the members' collectors (package logship)
// write, and what the hub adds.
const (
	LogFieldCluster   = "cluster"
	LogFieldRegion    = "region"
	LogFieldNamespace = logship.FieldNamespace
	LogFieldPod       = logship.FieldPod
	LogFieldContainer = logship.FieldContainer
	LogFieldNode      = logship.FieldNode
	// LogFieldPodLabel is followed by a pod label's key.
	LogFieldPodLabel = logship.FieldPodLabel
)

// LogStreamFields are the fields that make a line's stream in the store: every container of
// every cluster is a stream of its own.
var LogStreamFields = []string{LogFieldCluster, LogFieldNamespace, LogFieldPod, LogFieldContainer}

// LogQuery is what `convoy logs` searches for; Filter turns it into LogsQL.
type LogQuery struct {
	// Namespace restricts the lines to one namespace; empty means every one.
	Namespace string
	// Selector restricts them to pods whose labels match (labels.Parse's syntax).
	Selector string
	// Clusters restricts them to these clusters; empty means every one.
	Clusters []string
	// Since keeps the lines of the last Since (zero: no bound).
	Since time.Duration
	// Grep keeps the lines whose message matches this regular expression (RE2).
	Grep string
}

// Filter is q as a LogsQL filter, or an error that says what is wrong with q.
func (q LogQuery) Filter() (string, error) {
	var parts []string
	if q.Since > 0 {
		parts = append(parts, "_time:"+logsqlDuration(q.Since))
	}
	if q.Namespace != "" {
		parts = append(parts, quoteField(LogFieldNamespace)+":="+strconv.Quote(q.Namespace))
	}
	if len(q.Clusters) > 0 {
		cs := slices.Clone(q.Clusters)
		slices.Sort(cs)
		cs = slices.Compact(cs)
		parts = append(parts, quoteField(LogFieldCluster)+":"+inList(cs))
	}
	if q.Selector != "" {
		sel, err := labels.Parse(q.Selector)
		if err != nil {
			return "", fmt.Errorf("-l %q: %v", q.Selector, err)
		}
		reqs, _ := sel.Requirements()
		for _, r := range reqs {
			field := quoteField(LogFieldPodLabel + r.Key())
			values := r.Values().UnsortedList()
			slices.Sort(values)
			switch r.Operator() {
			case selection.Equals, selection.DoubleEquals:
				parts = append(parts, field+":="+strconv.Quote(values[0]))
			case selection.In:
				parts = append(parts, field+":"+inList(values))
			case selection.NotEquals:
				parts = append(parts, "-"+field+":="+strconv.Quote(values[0]))
			case selection.NotIn:
				parts = append(parts, "-"+field+":"+inList(values))
			case selection.Exists:
				parts = append(parts, field+":*")
			case selection.DoesNotExist:
				parts = append(parts, "-"+field+":*")
			default:
				return "", fmt.Errorf("-l %q: pod logs are selected by =, ==, !=, in, notin and existence; %q is not one of them", q.Selector, r.Operator())
			}
		}
	}
	if q.Grep != "" {
		if _, err := regexp.Compile(q.Grep); err != nil {
			return "", fmt.Errorf("--grep %q: not a regular expression (RE2 syntax): %v", q.Grep, err)
		}
		parts = append(parts, "_msg:~"+strconv.Quote(q.Grep))
	}
	if len(parts) == 0 {
		return "*", nil
	}
	return strings.Join(parts, " "), nil
}

// LogFields are the fields `convoy logs` reads of each line.
var LogFields = []string{"_time", "_msg", LogFieldCluster, LogFieldNamespace, LogFieldPod, LogFieldContainer}

// quoteField quotes a field name for LogsQL when it holds more than letters, digits, _ and .
// (a label's key may hold / and -).
func quoteField(f string) string {
	for _, c := range f {
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return strconv.Quote(f)
		}
	}
	return f
}

func inList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(v)
	}
	return "in(" + strings.Join(q, ",") + ")"
}

// logsqlDuration writes d in LogsQL's duration syntax, in its largest whole unit (2h, 90m,
// 45s, 500ms).
func logsqlDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

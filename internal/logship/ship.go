// Package logship is Convoy's log collector: on one node, it follows the log file of every
// container of the node's pods and sends their lines to the hub's log store, marked with the
// pod's namespace, name, container, node and labels. The agent runs it as a DaemonSet on every
// real node of its member (observe.LogCollector), as `convoy log-collector`.
//
// It is built for latency and for losing nothing it can keep:
//   - It waits on inotify for a container's directory, not on a timer, and sends what it read at
//     once, at most one request every MinInterval: a line reaches the hub tens of milliseconds
//     after it is written.
//   - It keeps no queue of its own. The kubelet's log files are the buffer: it moves its
//     position in a file (kept in StateFile across restarts) only past lines the hub took, so
//     while the hub is away nothing is read ahead, and what was written meanwhile is sent when
//     the hub is back. The bound is the kubelet's rotation: the file it was reading stays open
//     until read to its end, so each container keeps that file and the current one
//     (containerLogMaxSize each, 10 MiB by default); files the kubelet rotated away in between
//     are lost.
//   - A batch the hub refuses for good (400, 413) is dropped with a warning, so that one bad
//     line cannot stop a node's logs; any other failure is retried, honouring Retry-After.
package logship

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/time/rate"
)

// Container is one instance of a container whose log the collector follows.
type Container struct {
	Namespace, Pod, Name string
	// ID is the container runtime's ID of this instance (without its "containerd://"): each
	// restart of a container has its own, and its own log file.
	ID     string
	Node   string
	Labels map[string]string
}

// The fields of each line the collector sends, as the hub's log store keeps them
// (observe.LogFields reads them).
const (
	FieldNamespace = "kubernetes.pod_namespace"
	FieldPod       = "kubernetes.pod_name"
	FieldContainer = "kubernetes.container_name"
	FieldNode      = "kubernetes.pod_node_name"
	// FieldPodLabel is followed by the label's key.
	FieldPodLabel = "kubernetes.pod_labels."
	FieldStream   = "stream"
)

// Shipper follows the log files of a node's containers and sends their lines.
type Shipper struct {
	// LinkDir is where the kubelet links each container's log file, as
	// POD_NAMESPACE_CONTAINER-ID.log: /var/log/containers.
	LinkDir string
	// StateFile keeps how far each file was sent, across restarts.
	StateFile string
	// Containers lists the node's containers as they are now; a value on Changed says that
	// the list changed.
	Containers func() []Container
	Changed    <-chan struct{}
	// Send sends one batch: JSON lines, gzip-compressed. A *SendError says how the hub
	// answered.
	Send func(ctx context.Context, body []byte) error
	// Rate bounds what is sent, in compressed bytes a second (unbounded when zero).
	Rate int
	// BatchBytes bounds one batch's lines, uncompressed (DefaultBatchBytes when zero).
	BatchBytes int
	// MinInterval is the least time between two sends that are not full
	// (DefaultMinInterval when zero), and Resync how often it looks at every file without
	// being told to (DefaultResync when zero).
	MinInterval, Resync time.Duration
	Log                 *slog.Logger

	files   map[string]*follow // by the file's real path
	state   map[string]position
	watched map[string]int // directories, and how many followed files each holds
	watcher *fsnotify.Watcher
	next    int
	buf     []byte
}

// Defaults.
const (
	DefaultBatchBytes  = 512 << 10
	DefaultMinInterval = 100 * time.Millisecond
	DefaultResync      = time.Second
	// maxLine bounds one line: a longer one is sent in pieces of this size.
	maxLine = 256 << 10
	// chunk is how much is read of a file at a time.
	chunk = 256 << 10
)

// SendError is the hub's answer to a batch it did not take.
type SendError struct {
	Status     int
	RetryAfter time.Duration
	Message    string
}

func (e *SendError) Error() string {
	return fmt.Sprintf("the hub answered %d: %s", e.Status, e.Message)
}

// permanent says whether the hub will never take this batch.
func (e *SendError) permanent() bool {
	return e.Status == 400 || e.Status == 413 || e.Status == 422
}

// position is how far a file was sent, and which file (its inode) that was.
type position struct {
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// follow is one followed file.
type follow struct {
	path   string
	c      Container
	prefix []byte // the container's fields, each followed by a comma
	f      *os.File
	inode  uint64
	// sent is how far the hub took the file's lines; read how far they are in the batch
	// being sent.
	sent, read int64
	// rotated: the path now names a newer file (the kubelet rotated it): this one is read to
	// its end, then the new one is opened. gone: the container is no longer listed: the file is
	// read to its end, then forgotten.
	rotated, gone, listed bool
}

// Run follows and sends until ctx ends.
func (s *Shipper) Run(ctx context.Context) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.files, s.watched, s.buf = map[string]*follow{}, map[string]int{}, make([]byte, chunk)
	s.state = loadState(s.StateFile, s.Log)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch the log files: %w", err)
	}
	s.watcher = w
	defer func() {
		_ = w.Close()
		for _, fl := range s.files {
			_ = fl.f.Close()
		}
	}()
	if err := w.Add(s.LinkDir); err != nil {
		s.Log.Warn("cannot watch the kubelet's log links; looking every resync instead", "dir", s.LinkDir, "err", err)
	}
	var limiter *rate.Limiter
	batch := cmp.Or(s.BatchBytes, DefaultBatchBytes)
	if s.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(s.Rate), max(s.Rate, batch))
	}
	tick := time.NewTicker(cmp.Or(s.Resync, DefaultResync))
	defer tick.Stop()
	var lastSend time.Time
	for {
		s.sync()
		lines, n := s.readBatch(batch)
		if n > 0 {
			if wait := cmp.Or(s.MinInterval, DefaultMinInterval) - time.Since(lastSend); len(lines) < batch && wait > 0 {
				// Lines read now are sent after the wait too: reading again would only add to
				// the batch, and the wait is short.
				if !sleep(ctx, wait) {
					return nil
				}
			}
			lastSend = time.Now()
			body, err := compress(lines)
			if err != nil {
				return err
			}
			if limiter != nil {
				if err := limiter.WaitN(ctx, min(len(body), limiter.Burst())); err != nil {
					return nil
				}
			}
			if !s.send(ctx, body, n) {
				return nil
			}
			s.commit()
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.Changed:
		case <-w.Events:
		case err := <-w.Errors:
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				s.Log.Warn("watching the log files", "err", err)
			}
		case <-tick.C:
		}
		// One look serves every event that came meanwhile.
		for drained := false; !drained; {
			select {
			case <-w.Events:
			case <-s.Changed:
			default:
				drained = true
			}
		}
	}
}

// send sends a batch of n lines until the hub takes it, or refuses it for good, or ctx ends
// (then false).
func (s *Shipper) send(ctx context.Context, body []byte, n int) bool {
	backoff := 250 * time.Millisecond
	for {
		err := s.Send(ctx, body)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		wait := backoff
		if se := (*SendError)(nil); errors.As(err, &se) {
			if se.permanent() {
				s.Log.Warn("the hub refused a batch of lines; dropping it", "lines", n, "status", se.Status, "message", se.Message)
				return true
			}
			if se.RetryAfter > 0 {
				wait = se.RetryAfter
			}
		}
		s.Log.Info("cannot send lines to the hub; trying again", "lines", n, "in", wait, "err", err)
		if !sleep(ctx, wait) {
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sync follows the files of the containers listed now, and notes those that rotated or whose
// container is gone.
func (s *Shipper) sync() {
	for _, fl := range s.files {
		fl.listed = false
	}
	for _, c := range s.Containers() {
		link := filepath.Join(s.LinkDir, c.Pod+"_"+c.Namespace+"_"+c.Name+"-"+c.ID+".log")
		p, err := filepath.EvalSymlinks(link)
		if err != nil {
			continue // not linked yet, or gone
		}
		fl := s.files[p]
		if fl == nil {
			if fl = s.open(p, c); fl == nil {
				continue
			}
			s.files[p] = fl
		}
		if !sameContainer(fl.c, c) {
			fl.c, fl.prefix = c, prefix(c)
		}
		fl.listed = true
	}
	for _, fl := range s.files {
		fl.gone = !fl.listed
		if fl.rotated {
			continue
		}
		if st, err := os.Stat(fl.path); err == nil && inode(st) != fl.inode {
			fl.rotated = true
		}
	}
}

func (s *Shipper) open(p string, c Container) *follow {
	f, err := os.Open(p)
	if err != nil {
		s.Log.Warn("cannot open a container's log", "file", p, "err", err)
		return nil
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil
	}
	fl := &follow{path: p, c: c, prefix: prefix(c), f: f, inode: inode(st)}
	// Where the last run stopped, if it is the same file and still that long.
	if pos, ok := s.state[p]; ok && pos.Inode == fl.inode && pos.Offset <= st.Size() {
		fl.sent, fl.read = pos.Offset, pos.Offset
	}
	dir := filepath.Dir(p)
	if s.watched[dir] == 0 {
		if err := s.watcher.Add(dir); err != nil {
			s.Log.Warn("cannot watch a container's log directory; looking every resync instead", "dir", dir, "err", err)
		}
	}
	s.watched[dir]++
	return fl
}

func (s *Shipper) close(fl *follow) {
	_ = fl.f.Close()
	delete(s.files, fl.path)
	dir := filepath.Dir(fl.path)
	if s.watched[dir]--; s.watched[dir] <= 0 {
		delete(s.watched, dir)
		_ = s.watcher.Remove(dir)
	}
}

// readBatch reads new lines of the files, in turn, into one batch of up to max bytes, and
// says how many lines it holds.
func (s *Shipper) readBatch(max int) ([]byte, int) {
	paths := slices.Sorted(maps.Keys(s.files))
	var out []byte
	lines := 0
	// Each batch starts at another file, so that a chatty one does not starve the others.
	for i := range paths {
		if len(out) >= max {
			break
		}
		fl := s.files[paths[(s.next+i)%len(paths)]]
		var atEnd bool
		out, lines, atEnd = fl.readLines(s.buf, out, lines, max, s.Log)
		if atEnd && fl.read == fl.sent {
			// Read to its end with nothing of it in this batch: a rotated file's successor
			// is opened now, and a gone container's file is forgotten.
			switch {
			case fl.gone:
				s.close(fl)
			case fl.rotated:
				c := fl.c
				s.close(fl)
				if nf := s.open(fl.path, c); nf != nil {
					nf.sent, nf.read = 0, 0 // a new file: from its start
					s.files[fl.path] = nf
				}
			}
		}
	}
	if len(paths) > 0 {
		s.next = (s.next + 1) % len(paths)
	}
	return out, lines
}

// readLines appends the file's next lines to out, up to max bytes, and says whether it read
// to the file's end. Only whole lines are taken: a line whose records (P … F) are not all
// written yet is read again next time.
func (fl *follow) readLines(buf, out []byte, lines, max int, log *slog.Logger) ([]byte, int, bool) {
	pos := fl.read
	var part []byte
	var partTime time.Time
	var partStream string
	for len(out) < max {
		n, _ := fl.f.ReadAt(buf, pos)
		data := buf[:n]
		last := bytes.LastIndexByte(data, '\n')
		if last < 0 {
			if n == len(buf) {
				// A record longer than a chunk is not the runtime's: skip it.
				log.Warn("skipping a record longer than the runtime writes", "file", fl.path, "offset", pos)
				pos += int64(n)
				fl.read, part = pos, nil
				continue
			}
			return out, lines, true
		}
		data = data[:last+1]
		for len(data) > 0 && len(out) < max {
			i := bytes.IndexByte(data, '\n')
			raw := data[:i]
			data = data[i+1:]
			pos += int64(i + 1)
			r, err := parseRecord(raw)
			if err != nil {
				log.Debug("skipping a line that is not a CRI record", "file", fl.path)
				if part == nil {
					fl.read = pos
				}
				continue
			}
			if part == nil {
				partTime, partStream = r.time, r.stream
			}
			if r.partial && len(part)+len(r.msg) < maxLine {
				part = append(part, r.msg...)
				if part == nil {
					part = []byte{}
				}
				continue
			}
			msg := r.msg
			if part != nil {
				msg = append(part, r.msg...)
			}
			out = fl.appendLine(out, partTime, partStream, msg)
			lines++
			part = nil
			fl.read = pos
		}
	}
	return out, lines, false
}

func (fl *follow) appendLine(out []byte, t time.Time, stream string, msg []byte) []byte {
	out = append(out, '{')
	out = append(out, fl.prefix...)
	out = append(out, `"`+FieldStream+`":"`...)
	out = append(out, stream...)
	out = append(out, `","_time":"`...)
	out = t.UTC().AppendFormat(out, time.RFC3339Nano)
	out = append(out, `","_msg":`...)
	m, _ := json.Marshal(string(msg))
	out = append(out, m...)
	return append(out, "}\n"...)
}

// commit marks every line in the batch as sent, and keeps the positions.
func (s *Shipper) commit() {
	for _, fl := range s.files {
		fl.sent = fl.read
	}
	s.saveState()
}

func (s *Shipper) saveState() {
	st := make(map[string]position, len(s.files))
	for p, fl := range s.files {
		st[p] = position{Inode: fl.inode, Offset: fl.sent}
	}
	// A file not followed now (its container not listed yet, after a restart) keeps its
	// position while it exists.
	for p, pos := range s.state {
		if _, ok := st[p]; !ok {
			if _, err := os.Stat(p); err == nil {
				st[p] = pos
			}
		}
	}
	s.state = st
	raw, _ := json.Marshal(st)
	tmp := s.StateFile + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		s.Log.Warn("cannot keep the positions in the log files", "err", err)
		return
	}
	if err := os.Rename(tmp, s.StateFile); err != nil {
		s.Log.Warn("cannot keep the positions in the log files", "err", err)
	}
}

func loadState(file string, log *slog.Logger) map[string]position {
	st := map[string]position{}
	raw, err := os.ReadFile(file)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot read the positions in the log files; reading them from their starts", "err", err)
		}
		return st
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		log.Warn("the positions in the log files are not readable; reading them from their starts", "err", err)
		return map[string]position{}
	}
	return st
}

func compress(lines []byte) ([]byte, error) {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	if _, err := zw.Write(lines); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// prefix is the JSON of a container's fields, each followed by a comma, in a fixed order.
func prefix(c Container) []byte {
	var b []byte
	field := func(k, v string) {
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(v)
		b = append(b, kj...)
		b = append(b, ':')
		b = append(b, vj...)
		b = append(b, ',')
	}
	field(FieldNamespace, c.Namespace)
	field(FieldPod, c.Pod)
	field(FieldContainer, c.Name)
	field(FieldNode, c.Node)
	for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
		field(FieldPodLabel+k, c.Labels[k])
	}
	return b
}

func sameContainer(a, b Container) bool {
	return a.Namespace == b.Namespace && a.Pod == b.Pod && a.Name == b.Name && a.ID == b.ID &&
		a.Node == b.Node && maps.Equal(a.Labels, b.Labels)
}

func inode(st os.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}

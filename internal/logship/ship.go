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
//     position in a file (kept in StateFile across restarts, by path and inode) only past lines
//     the hub took, so while the hub is away nothing is read ahead, and what was written
//     meanwhile is sent when the hub is back. The bound is the kubelet's rotation: a rotated
//     file is followed under its new name until read to its end (found again by its inode after
//     a restart), so each container keeps that file and the current one (containerLogMaxSize
//     each, 10 MiB by default); files the kubelet rotated away in between are lost.
//   - Lines are sent at least once: a collector killed after the hub took a batch and before it
//     kept its positions sends that batch again.
//   - A batch the hub refuses for good (400, 413, 422) is halved until the refused line is
//     alone, and that line is dropped with a warning, so that one bad line cannot stop a
//     node's logs; any other failure is retried, honouring Retry-After.
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
	// being told to (DefaultResync when zero). A rotated file, or a gone container's, is closed
	// once it was read to its end and nothing came for a Resync: the runtime may write to it
	// for a moment after the kubelet renamed it.
	MinInterval, Resync time.Duration
	Log                 *slog.Logger

	files   map[fileKey]*follow
	state   map[fileKey]int64 // offsets of files not followed (yet), from the last run
	watched map[string]int    // directories, and how many followed files each holds
	watcher *fsnotify.Watcher
	limiter *rate.Limiter
	next    int
	buf     []byte
}

// Defaults.
const (
	DefaultBatchBytes  = 512 << 10
	DefaultMinInterval = 100 * time.Millisecond
	DefaultResync      = time.Second
	// maxLine bounds one line: a longer one (P records that go on) is sent in pieces of this
	// size.
	maxLine = 256 << 10
	// chunk is how much is read of a file at a time: a record longer than this (possible only
	// when the runtime's max_container_log_line_size is raised past it) is skipped.
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

// fileKey names one file: the path it had when it was opened, and its inode (a rotated file
// keeps its inode under a new name, and the path names a new file).
type fileKey struct {
	Path  string `json:"path"`
	Inode uint64 `json:"inode"`
}

// position is how far a file was sent, as StateFile keeps it.
type position struct {
	fileKey
	Offset int64 `json:"offset"`
}

// follow is one followed file.
type follow struct {
	key    fileKey
	c      Container
	prefix []byte // the container's fields, each followed by a comma
	f      *os.File
	// sent is how far the hub took the file's lines; read how far they are in the batch
	// being sent.
	sent, read int64
	// part holds, per stream, a line whose P records were read and whose F record was not.
	part [2]partial
	// rotated: the path names a newer file now. gone: the container is no longer listed.
	// Either way the file is closed once read to its end and quiet since quiet.
	rotated, gone bool
	quiet         time.Time
}

type partial struct {
	// start is the offset of the line's first record: where a new run reads it again.
	start int64
	msg   []byte
	time  time.Time
}

// Run follows and sends until ctx ends.
func (s *Shipper) Run(ctx context.Context) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.files, s.watched, s.buf = map[fileKey]*follow{}, map[string]int{}, make([]byte, chunk)
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
	batch := cmp.Or(s.BatchBytes, DefaultBatchBytes)
	if s.Rate > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(s.Rate), max(s.Rate, batch))
	}
	tick := time.NewTicker(s.resync())
	defer tick.Stop()
	var lastSend time.Time
	// Links are resolved and files checked for rotation when something other than a write
	// happened (a file made or renamed, the pod list changed, a resync): a write only needs
	// the files read.
	resolve := true
	for {
		if resolve {
			s.sync()
			resolve = false
		}
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
			if !s.send(ctx, lines, n) {
				return nil
			}
			s.commit()
			continue
		}
		if s.moved() {
			s.commit() // past what holds no line
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.Changed:
			resolve = true
		case ev := <-w.Events:
			resolve = resolve || ev.Op != fsnotify.Write
		case err := <-w.Errors:
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				s.Log.Warn("watching the log files", "err", err)
			}
			resolve = true // an event may be lost
		case <-tick.C:
			resolve = true
		}
		// One look serves every event that came meanwhile.
		for drained := false; !drained; {
			select {
			case ev := <-w.Events:
				resolve = resolve || ev.Op != fsnotify.Write
			case <-s.Changed:
				resolve = true
			default:
				drained = true
			}
		}
	}
}

func (s *Shipper) resync() time.Duration { return cmp.Or(s.Resync, DefaultResync) }

// send sends n lines until the hub takes them, or refuses them for good, or ctx ends (then
// false). Lines the hub refuses for good are halved, and each half sent, until the line it
// refuses is alone, which is dropped.
func (s *Shipper) send(ctx context.Context, lines []byte, n int) bool {
	body, err := compress(lines)
	if err != nil {
		s.Log.Error("cannot compress lines; dropping them", "lines", n, "err", err)
		return true
	}
	backoff := 250 * time.Millisecond
	for {
		if s.limiter != nil {
			if err := s.limiter.WaitN(ctx, min(len(body), s.limiter.Burst())); err != nil {
				return false
			}
		}
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
				if n == 1 {
					s.Log.Warn("the hub refused a line; dropping it", "status", se.Status, "message", se.Message)
					return true
				}
				// The middle line's end: each half holds at least one line.
				cut := bytes.IndexByte(lines[len(lines)/2:], '\n') + len(lines)/2 + 1
				if cut >= len(lines) {
					cut = bytes.LastIndexByte(lines[:len(lines)-1], '\n') + 1
				}
				first := bytes.Count(lines[:cut], []byte{'\n'})
				return s.send(ctx, lines[:cut], first) && s.send(ctx, lines[cut:], n-first)
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

// sync follows the files of the containers listed now (a new file of a rotated one at once,
// beside the old one), and notes those that rotated or whose container is gone.
func (s *Shipper) sync() {
	listed := map[string]bool{}
	now := time.Now()
	for _, c := range s.Containers() {
		listed[c.ID] = true
		p, err := filepath.EvalSymlinks(filepath.Join(s.LinkDir, c.Pod+"_"+c.Namespace+"_"+c.Name+"-"+c.ID+".log"))
		if err != nil {
			continue // not linked yet, or between a rotation's rename and the new file
		}
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		key := fileKey{Path: p, Inode: inode(st)}
		fl := s.files[key]
		if fl == nil {
			if fl = s.open(key, c); fl == nil {
				continue
			}
			s.resumeRotated(key, c)
		}
		if !sameContainer(fl.c, c) {
			fl.c, fl.prefix = c, prefix(c)
		}
	}
	for _, fl := range s.files {
		switch {
		case !fl.gone && !listed[fl.c.ID]:
			fl.gone, fl.quiet = true, now
		case fl.gone && listed[fl.c.ID]:
			fl.gone = false // listed again
		}
		if fl.rotated {
			continue
		}
		if st, err := os.Stat(fl.key.Path); err == nil && inode(st) != fl.key.Inode {
			fl.rotated, fl.quiet = true, now
		}
	}
}

// open follows a file, from where the last run stopped if it kept that, else from its start.
func (s *Shipper) open(key fileKey, c Container) *follow {
	return s.openAt(key, key.Path, c)
}

func (s *Shipper) openAt(key fileKey, name string, c Container) *follow {
	f, err := os.Open(name)
	if err != nil {
		s.Log.Warn("cannot open a container's log", "file", name, "err", err)
		return nil
	}
	st, err := f.Stat()
	if err != nil || inode(st) != key.Inode {
		_ = f.Close()
		return nil // rotated meanwhile: the next look finds the new one
	}
	fl := &follow{key: key, c: c, prefix: prefix(c), f: f}
	if off, ok := s.state[key]; ok && off <= st.Size() {
		fl.sent, fl.read = off, off
	}
	delete(s.state, key)
	dir := filepath.Dir(name)
	if s.watched[dir] == 0 {
		if err := s.watcher.Add(dir); err != nil {
			s.Log.Warn("cannot watch a container's log directory; looking every resync instead", "dir", dir, "err", err)
		}
	}
	s.watched[dir]++
	s.files[key] = fl
	return fl
}

// resumeRotated follows, when a path's file is opened, the file the last run was reading at
// that path if the kubelet rotated it meanwhile: it is found by its inode in the same
// directory, under its new name, and read from where the last run stopped. A position that
// finds no file is forgotten.
func (s *Shipper) resumeRotated(key fileKey, c Container) {
	for old := range s.state {
		if old.Path != key.Path || old.Inode == key.Inode {
			continue
		}
		entries, _ := os.ReadDir(filepath.Dir(key.Path))
		found := false
		for _, e := range entries {
			info, err := e.Info()
			if err != nil || !info.Mode().IsRegular() || inode(info) != old.Inode {
				continue
			}
			if fl := s.openAt(old, filepath.Join(filepath.Dir(key.Path), e.Name()), c); fl != nil {
				fl.rotated, fl.quiet = true, time.Now()
				found = true
			}
			break
		}
		if !found {
			delete(s.state, old)
		}
	}
}

func (s *Shipper) close(fl *follow) {
	_ = fl.f.Close()
	delete(s.files, fl.key)
	if fl.gone {
		// Should the container be listed again, its file goes on from here.
		s.state[fl.key] = fl.saved()
	}
	dir := filepath.Dir(fl.f.Name())
	if s.watched[dir]--; s.watched[dir] <= 0 {
		delete(s.watched, dir)
		_ = s.watcher.Remove(dir)
	}
}

// readBatch reads new lines of the files, in turn, into one batch of up to max bytes, and
// says how many lines it holds.
func (s *Shipper) readBatch(max int) ([]byte, int) {
	keys := slices.SortedFunc(maps.Keys(s.files), func(a, b fileKey) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Inode, b.Inode))
	})
	var out []byte
	lines := 0
	now := time.Now()
	// Each batch starts at another file, so that a chatty one does not starve the others.
	for i := range keys {
		if len(out) >= max {
			break
		}
		fl := s.files[keys[(s.next+i)%len(keys)]]
		before := lines
		var atEnd bool
		out, lines, atEnd = fl.readLines(s.buf, out, lines, max, s.Log)
		if lines > before {
			fl.quiet = now
		}
		// A rotated file, or a gone container's, read to its end, with nothing of it in this
		// batch, and quiet for a resync: nothing more will come. A line whose last record
		// never came is sent as it is, then the file is closed.
		if (fl.rotated || fl.gone) && atEnd && fl.read == fl.sent && now.Sub(fl.quiet) >= s.resync() {
			if flushed := fl.flushParts(out); len(flushed) > len(out) {
				lines += bytes.Count(flushed[len(out):], []byte{'\n'})
				out = flushed
			} else {
				s.close(fl)
			}
		}
	}
	if len(keys) > 0 {
		s.next = (s.next + 1) % len(keys)
	}
	return out, lines
}

// moved says whether a file was read past what was sent with no line in between (records
// that were not CRI's, or P records whose line is not whole yet).
func (s *Shipper) moved() bool {
	for _, fl := range s.files {
		if fl.read != fl.sent {
			return true
		}
	}
	return false
}

// readLines appends the file's next whole lines to out, up to max bytes, and says whether it
// read to the file's end. A line's P records are kept, per stream, until its F record comes.
func (fl *follow) readLines(buf, out []byte, lines, max int, log *slog.Logger) ([]byte, int, bool) {
	for len(out) < max {
		n, _ := fl.f.ReadAt(buf, fl.read)
		data := buf[:n]
		last := bytes.LastIndexByte(data, '\n')
		if last < 0 {
			if n == len(buf) {
				log.Warn("skipping a record longer than the runtime writes", "file", fl.f.Name(), "offset", fl.read)
				fl.read += int64(n)
				continue
			}
			return out, lines, true
		}
		data = data[:last+1]
		for len(data) > 0 && len(out) < max {
			i := bytes.IndexByte(data, '\n')
			raw := data[:i]
			data = data[i+1:]
			fl.read += int64(i + 1)
			r, err := parseRecord(raw)
			if err != nil {
				log.Debug("skipping a line that is not a CRI record", "file", fl.f.Name())
				continue
			}
			p := &fl.part[0]
			if r.stream == "stderr" {
				p = &fl.part[1]
			}
			if p.msg == nil {
				p.time, p.start = r.time, fl.read-int64(i+1)
			}
			if r.partial && len(p.msg)+len(r.msg) < maxLine {
				p.msg = append(p.msg, r.msg...)
				if p.msg == nil {
					p.msg = []byte{}
				}
				continue
			}
			msg := r.msg
			if p.msg != nil {
				msg = append(p.msg, r.msg...)
			}
			out = fl.appendLine(out, p.time, r.stream, msg)
			lines++
			p.msg = nil
		}
	}
	return out, lines, false
}

// flushParts appends the lines whose P records came and whose F record did not, as they are.
func (fl *follow) flushParts(out []byte) []byte {
	for i, stream := range []string{"stdout", "stderr"} {
		if p := &fl.part[i]; p.msg != nil {
			out = fl.appendLine(out, p.time, stream, p.msg)
			p.msg = nil
		}
	}
	return out
}

// saved is where a new run should read the file from: past what was sent, but not past the
// first record of a line not yet whole.
func (fl *follow) saved() int64 {
	off := fl.sent
	for _, p := range fl.part {
		if p.msg != nil {
			off = min(off, p.start)
		}
	}
	return off
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
	st := make([]position, 0, len(s.files)+len(s.state))
	for k, fl := range s.files {
		st = append(st, position{fileKey: k, Offset: fl.saved()})
	}
	// A file not followed now (its container not listed yet, after a restart) keeps its
	// position while its path exists.
	for k, off := range s.state {
		if _, err := os.Stat(k.Path); err == nil {
			st = append(st, position{fileKey: k, Offset: off})
		} else {
			delete(s.state, k)
		}
	}
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

func loadState(file string, log *slog.Logger) map[fileKey]int64 {
	st := map[fileKey]int64{}
	raw, err := os.ReadFile(file)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot read the positions in the log files; reading them from their starts", "err", err)
		}
		return st
	}
	var list []position
	if err := json.Unmarshal(raw, &list); err != nil {
		log.Warn("the positions in the log files are not readable; reading them from their starts", "err", err)
		return st
	}
	for _, p := range list {
		st[p.fileKey] = p.Offset
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

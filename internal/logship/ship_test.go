package logship_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/logship"
	"github.com/convoy-dev/convoy/internal/observe"
)

// TestShipper follows a container's CRI log file into a real log store (bin/victoria-logs):
// split lines are joined and marked with the container's fields, nothing is lost or sent twice
// while the hub is away, across a restart of the collector or across a rotation of the file,
// and a batch the hub refuses for good is dropped without stopping the lines after it.
func TestShipper(t *testing.T) {
	t.Parallel()
	storeURL := hubtest.LogStore(t).String()

	// The kubelet's layout: the container's log file, and its link.
	dir := t.TempDir()
	links, logs := filepath.Join(dir, "containers"), filepath.Join(dir, "pods", "demo_web-1_0f0e", "web")
	for _, d := range []string{links, logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(logs, "0.log")
	w, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { w.Close() }()
	if err := os.Symlink(file, filepath.Join(links, "web-1_demo_web-c0ffee.log")); err != nil {
		t.Fatal(err)
	}
	recordTo := func(stream, tag, msg string) {
		t.Helper()
		if _, err := fmt.Fprintf(w, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, tag, msg); err != nil {
			t.Fatal(err)
		}
	}
	record := func(tag, msg string) { t.Helper(); recordTo("stdout", tag, msg) }

	insert := storeURL + "/insert/jsonline?" + url.Values{
		"_stream_fields": {strings.Join(observe.LogStreamFields[1:], ",")}, "_msg_field": {"_msg"}, "_time_field": {"_time"},
	}.Encode()
	hs := logship.HTTPSender{URL: insert, Client: http.DefaultClient}
	var away atomic.Bool
	var failed, refused atomic.Int32
	send := func(ctx context.Context, body []byte) error {
		if away.Load() {
			failed.Add(1)
			return &logship.SendError{Status: http.StatusServiceUnavailable, Message: "the hub is away"}
		}
		// The hub refuses any request that holds this line.
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return err
		}
		lines, err := io.ReadAll(zr)
		if err != nil {
			t.Error(err)
			return err
		}
		if bytes.Contains(lines, []byte("a line the hub refuses")) {
			refused.Add(1)
			return &logship.SendError{Status: http.StatusBadRequest, Message: "cannot parse"}
		}
		return hs.Send(ctx, body)
	}
	state := filepath.Join(dir, "positions.json")
	start := func() func() {
		ctx, cancel := context.WithCancel(context.Background())
		s := &logship.Shipper{
			LinkDir: links, StateFile: state, Send: send, MinInterval: 10 * time.Millisecond,
			Containers: func() []logship.Container {
				return []logship.Container{{Namespace: "demo", Pod: "web-1", Name: "web", ID: "c0ffee", Node: "n1", Labels: map[string]string{"app": "web"}}}
			},
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := s.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
		return func() { cancel(); <-done }
	}
	lines := func() ([]map[string]string, error) {
		resp, err := http.Get(storeURL + "/select/logsql/query?" + url.Values{"query": {"*"}}.Encode())
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out []map[string]string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l map[string]string
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				return nil, err
			}
			out = append(out, l)
		}
		return out, sc.Err()
	}
	// want waits until the store holds exactly these messages, each once.
	want := func(step string, msgs ...string) []map[string]string {
		t.Helper()
		slices.Sort(msgs)
		var got []map[string]string
		hubtest.Eventually(t, step, 30*time.Second, func() (bool, error) {
			var err error
			got, err = lines()
			var have []string
			for _, l := range got {
				have = append(have, l["_msg"])
			}
			slices.Sort(have)
			if len(have) > len(msgs) {
				t.Fatalf("%s: the store holds %q, more than %q", step, have, msgs)
			}
			return slices.Equal(have, msgs), err
		})
		return got
	}

	stop := start()
	record("F", "one")
	record("P", "two, ")
	record("P", "split ")
	record("F", "in three")
	if _, err := fmt.Fprintln(w, "not a CRI record"); err != nil {
		t.Fatal(err)
	}
	record("F", `{"kubernetes.pod_name":"forged"}`)
	// Each stream's P records make its own line, whatever comes between them.
	recordTo("stdout", "P", "out, ")
	recordTo("stderr", "F", "err between")
	recordTo("stdout", "F", "whole")
	sent := []string{"one", "two, split in three", `{"kubernetes.pod_name":"forged"}`, "out, whole", "err between"}
	got := want("the first lines", sent...)
	for _, l := range got {
		if l["_msg"] == "err between" && l["stream"] != "stderr" {
			t.Errorf("line %v: stream %q, want stderr", l, l["stream"])
		}
		if l["_msg"] != "one" {
			continue
		}
		for k, v := range map[string]string{"kubernetes.pod_namespace": "demo", "kubernetes.pod_name": "web-1", "kubernetes.container_name": "web",
			"kubernetes.pod_node_name": "n1", "kubernetes.pod_labels.app": "web", "stream": "stdout"} {
			if l[k] != v {
				t.Errorf("line %v: %s is %q, want %q", l, k, l[k], v)
			}
		}
	}

	// The hub away: the collector tries again and again, then sends the line once.
	away.Store(true)
	record("F", "while away")
	hubtest.Eventually(t, "two failed sends", 30*time.Second, func() (bool, error) { return failed.Load() >= 2, nil })
	away.Store(false)
	sent = append(sent, "while away")
	want("the line written while the hub was away", sent...)

	// A line written while the collector is down is sent by the next, and nothing again.
	stop()
	record("F", "while stopped")
	stop = start()
	defer func() { stop() }()
	sent = append(sent, "while stopped")
	want("the line written while the collector was down", sent...)

	// The kubelet rotates the file: the runtime's last line in the old one, then the new one.
	if err := os.Rename(file, file+".20261204-160000"); err != nil {
		t.Fatal(err)
	}
	record("F", "last in the old file")
	w.Close()
	if w, err = os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		t.Fatal(err)
	}
	record("F", "first in the new file")
	sent = append(sent, "last in the old file", "first in the new file")
	want("the lines on both sides of a rotation", sent...)

	// The kubelet rotates the file while the collector is down: the next finds the old file
	// under its new name, and sends the rest of it and the new one.
	stop()
	record("F", "in the new file, rotated while stopped")
	if err := os.Rename(file, file+".20261204-170000"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if w, err = os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		t.Fatal(err)
	}
	record("F", "in the newest file")
	stop = start()
	sent = append(sent, "in the new file, rotated while stopped", "in the newest file")
	want("the lines on both sides of a rotation while the collector was down", sent...)

	// A line whose first record was read before the collector stopped, and whose last was
	// written after: the next run sends it whole.
	st, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	record("P", "begun before a restart, ")
	hubtest.Eventually(t, "the collector reading the first record", 30*time.Second, func() (bool, error) {
		now, err := os.Stat(state) // it keeps its positions once it read past what it sent
		return err == nil && now.ModTime().After(st.ModTime()), err
	})
	stop()
	record("F", "ended after")
	stop = start()
	sent = append(sent, "begun before a restart, ended after")
	want("a line split across a restart", sent...)

	// A batch the hub refuses for good is halved until the refused line is alone; it alone
	// is dropped. The three lines are written while the collector is down, so that they go
	// in one batch.
	stop()
	record("F", "before the refused line")
	record("F", "a line the hub refuses")
	record("F", "after the refused line")
	stop = start()
	sent = append(sent, "before the refused line", "after the refused line")
	want("the lines beside a refused one", sent...)
	if refused.Load() == 0 {
		t.Error("the hub was never asked to take the line it refuses")
	}
}

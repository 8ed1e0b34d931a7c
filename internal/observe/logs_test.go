package observe

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"sigs.k8s.io/yaml"
)

func TestLogQueryFilter(t *testing.T) {
	for _, tc := range []struct {
		q    LogQuery
		want string
		err  string
	}{
		{q: LogQuery{}, want: "*"},
		{q: LogQuery{Since: 10 * time.Minute}, want: "_time:10m"},
		{q: LogQuery{Since: 90 * time.Minute}, want: "_time:90m"},
		{q: LogQuery{Since: 2 * time.Hour}, want: "_time:2h"},
		{q: LogQuery{Since: 1500 * time.Millisecond}, want: "_time:1500ms"},
		{q: LogQuery{Namespace: "demo"}, want: `kubernetes.pod_namespace:="demo"`},
		{q: LogQuery{Clusters: []string{"us-east", "eu-west", "us-east"}}, want: `cluster:in("eu-west","us-east")`},
		{q: LogQuery{Selector: "app=web"}, want: `kubernetes.pod_labels.app:="web"`},
		{q: LogQuery{Selector: "app.kubernetes.io/name==web"}, want: `"kubernetes.pod_labels.app.kubernetes.io/name":="web"`},
		{q: LogQuery{Selector: "tier in (b,a),env!=prod,canary,!legacy"},
			want: `kubernetes.pod_labels.canary:* -kubernetes.pod_labels.env:="prod" -kubernetes.pod_labels.legacy:* kubernetes.pod_labels.tier:in("a","b")`},
		{q: LogQuery{Selector: "tier notin (a)"}, want: `-kubernetes.pod_labels.tier:in("a")`},
		{q: LogQuery{Grep: `GET /hello`}, want: `_msg:~"GET /hello"`},
		{q: LogQuery{Grep: `say "hi"`}, want: `_msg:~"say \"hi\""`},
		{q: LogQuery{Since: time.Minute, Namespace: "demo", Selector: "app=web", Clusters: []string{"a"}, Grep: "GET"},
			want: `_time:1m kubernetes.pod_namespace:="demo" cluster:in("a") kubernetes.pod_labels.app:="web" _msg:~"GET"`},
		{q: LogQuery{Selector: "app="}, want: `kubernetes.pod_labels.app:=""`},
		{q: LogQuery{Selector: "a b"}, err: `-l "a b": `},
		{q: LogQuery{Selector: "replicas>2"}, err: `pod logs are selected by =, ==, !=, in, notin and existence`},
		{q: LogQuery{Grep: "(GET"}, err: `--grep "(GET": not a regular expression`},
	} {
		got, err := tc.q.Filter()
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: err %v, want one with %q", tc.q, err, tc.err)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.q, err)
		case got != tc.want:
			t.Errorf("%+v:\n got %s\nwant %s", tc.q, got, tc.want)
		}
	}
}

func TestLogStoreArgs(t *testing.T) {
	got := strings.Join(LogStore{DataDir: "/d", Port: 9, Retention: 36 * time.Hour, PasswordFile: "/p"}.Args(), " ")
	want := "-storageDataPath=/d -retentionPeriod=2d -httpListenAddr=127.0.0.1:9 -loggerLevel=WARN -httpAuth.username=convoy-hub -httpAuth.password=file:///p"
	if got != want {
		t.Errorf("Args:\n got %s\nwant %s", got, want)
	}
}

func TestLogCollectorObjects(t *testing.T) {
	c := LogCollector{Image: "registry.convoy.local/convoy/convoy:v1", HubURL: "https://10.77.0.1:6443", HubCA: []byte("ca"), Token: "tok"}
	objs, err := c.Objects()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := yaml.Marshal(objs)
	got := string(raw)
	for _, want := range []string{
		"- log-collector", "- --hub-url=https://10.77.0.1:6443/apis/logs.convoy.dev/v1alpha1/insert/jsonline",
		"- --rate=524288", "- --node=$(NODE_NAME)", "- --state-dir=/var/lib/convoy-log-collector",
		"path: /var/log/containers", "path: /var/log/pods", "token: dG9r", "kind: DaemonSet", "- /convoy",
		"operator: NotIn", "- simulated", "imagePullPolicy: Always",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the collector's objects lack %q:\n%s", want, got)
		}
	}
	c.HostPaths = []string{"/data/clusters/a/nodes", "/data/clusters/a/nodes"}
	objs, _ = c.Objects()
	raw, _ = yaml.Marshal(objs)
	if got := string(raw); strings.Contains(got, "/var/log/pods") || strings.Count(got, "path: /data/clusters/a/nodes") != 1 {
		t.Errorf("with a host path, its directory once and no /var/log/pods:\n%s", got)
	}
	for _, bad := range []LogCollector{{Image: "i", HubURL: "http://x"}, {HubURL: "https://x"}, {Image: "i", HubURL: "https://x", HostPaths: []string{"rel"}}} {
		if _, err := bad.Objects(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestCleanLogLines(t *testing.T) {
	in := `{"_time":"2026-12-04T10:00:00Z","kubernetes.pod_name":"web-1","_msg":"hi","kubernetes.pod_name":"forged"}` + "\n" +
		"not json\n" + `["an","array"]` + "\n\n" +
		`{"_msg":"two","n":1.50,"nested":{"a":"b"}}` + "\n"
	want := `{"_time":"2026-12-04T10:00:00Z","kubernetes.pod_name":"web-1","_msg":"hi"}` + "\n" +
		`{"_msg":"two","n":1.50,"nested":{"a":"b"}}` + "\n"
	var z bytes.Buffer
	enc, _ := zstd.NewWriter(&z)
	enc.Write([]byte(in))
	enc.Close()
	var g bytes.Buffer
	gz := gzip.NewWriter(&g)
	gz.Write([]byte(in))
	gz.Close()
	for enc, body := range map[string][]byte{"": []byte(in), "zstd": z.Bytes(), "gzip": g.Bytes()} {
		got, err := CleanLogLines(body, enc)
		if err != nil || string(got) != want {
			t.Errorf("%q: %v\n got %s\nwant %s", enc, err, got, want)
		}
	}
	if _, err := CleanLogLines([]byte(in), "br"); err == nil {
		t.Error("brotli: no error")
	}
	if _, err := CleanLogLines([]byte("not zstd"), "zstd"); err == nil {
		t.Error("a body that is not zstd: no error")
	}
}

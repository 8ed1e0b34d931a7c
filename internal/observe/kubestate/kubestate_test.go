package kubestate

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.prom")

// TestSnapshot reads each testdata/NAME.yaml (objects, one YAML document each) and compares the
// metrics of the snapshot of them with testdata/NAME.prom (Prometheus' text format).
func TestSnapshot(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	decode := serializer.NewCodecFactory(clientgoscheme.Scheme).UniversalDeserializer()
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var s Snapshot
			r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
			for {
				doc, err := r.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("read %s: %v", file, err)
				}
				if len(bytes.TrimSpace(doc)) == 0 {
					continue
				}
				obj, _, err := decode.Decode(doc, nil, nil)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				add(t, &s, obj)
			}
			if len(s.Deployments)+len(s.StatefulSets)+len(s.Pods)+len(s.Jobs)+len(s.Nodes) == 0 {
				t.Fatalf("%s holds no object", file)
			}
			got := []byte(collect(t, s))
			golden := filepath.Join("testdata", name+".prom")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("metrics of %s differ from %s (run with -update to accept):\n%s", file, golden, got)
			}
			// Every family emitted is one Families lists, under kube-state-metrics' prefix.
			known := map[string]bool{}
			for _, f := range Families() {
				known[f] = true
			}
			for line := range strings.SplitSeq(string(got), "\n") {
				if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
					if f := strings.Fields(rest)[0]; !known[f] {
						t.Errorf("family %s is not in Families", f)
					}
				}
			}
		})
	}
}

func add(t *testing.T, s *Snapshot, obj runtime.Object) {
	t.Helper()
	switch o := obj.(type) {
	case *appsv1.Deployment:
		s.Deployments = append(s.Deployments, o)
	case *appsv1.StatefulSet:
		s.StatefulSets = append(s.StatefulSets, o)
	case *corev1.Pod:
		s.Pods = append(s.Pods, o)
	case *batchv1.Job:
		s.Jobs = append(s.Jobs, o)
	case *corev1.Node:
		s.Nodes = append(s.Nodes, o)
	default:
		t.Fatalf("testdata holds a %T, which a snapshot has no place for", obj)
	}
}

// TestTrim: what the informers keep of a pod is what its metrics need.
func TestTrim(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace, pod.UID = "web-1", "shop", "u1"
	pod.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
	pod.Spec = corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "web", Image: "web:1", Command: []string{"/web"},
		Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}}
	pod.Status.Phase = corev1.PodRunning
	before := collect(t, Snapshot{Pods: []*corev1.Pod{pod.DeepCopy()}})
	obj, err := trim(pod)
	if err != nil {
		t.Fatal(err)
	}
	p := obj.(*corev1.Pod)
	if p.Annotations != nil || p.Spec.Containers[0].Image != "" || p.Spec.Containers[0].Env != nil {
		t.Errorf("trim kept what no metric reads: %+v", p)
	}
	if after := collect(t, Snapshot{Pods: []*corev1.Pod{p}}); after != before {
		t.Errorf("the trimmed pod's metrics differ:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// collect gathers every metric of s through a pedantic registry (which checks each against
// its family's description) and formats them in Prometheus' text format.
func collect(t *testing.T, s Snapshot) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

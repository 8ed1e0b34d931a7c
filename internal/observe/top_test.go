package observe

import (
	"reflect"
	"testing"
)

func sample(v float64, kv ...string) Sample {
	l := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return Sample{Labels: l, Value: v}
}

func TestTopClusters(t *testing.T) {
	got := TopClusters(map[string][]Sample{
		"nodes":  {sample(2, "cluster", "us-east", "region", "us-east"), sample(1000, "cluster", "sim", "region", "none")},
		"pods":   {sample(9, "cluster", "us-east"), sample(30000, "cluster", "sim")},
		"cpu":    {sample(0.25, "cluster", "us-east")},
		"memory": {sample(3e8, "cluster", "us-east")},
	})
	want := []ClusterTop{
		{Cluster: "sim", Region: "none", Nodes: 1000, Pods: 30000, CPU: -1, Memory: -1},
		{Cluster: "us-east", Region: "us-east", Nodes: 2, Pods: 9, CPU: 0.25, Memory: 3e8},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestTopWorkloads(t *testing.T) {
	pod := func(v float64, cluster, name string, kv ...string) Sample {
		return sample(v, append([]string{"cluster", cluster, "namespace", "demo", "pod", name}, kv...)...)
	}
	got := TopWorkloads(map[string][]Sample{
		"owners": {
			pod(1, "us-east", "web-5d4f7b9c8-abcde", "owner_kind", "ReplicaSet", "owner_name", "web-5d4f7b9c8", "owner_is_controller", "true"),
			pod(1, "us-east", "web-5d4f7b9c8-fghij", "owner_kind", "ReplicaSet", "owner_name", "web-5d4f7b9c8", "owner_is_controller", "true"),
			pod(1, "eu-west", "web-5d4f7b9c8-klmno", "owner_kind", "ReplicaSet", "owner_name", "web-5d4f7b9c8", "owner_is_controller", "true"),
			pod(1, "us-east", "db-0", "owner_kind", "StatefulSet", "owner_name", "db", "owner_is_controller", "true"),
			pod(1, "us-east", "debug", "owner_kind", "<none>", "owner_name", "<none>", "owner_is_controller", "<none>"),
		},
		"running": {pod(1, "us-east", "web-5d4f7b9c8-abcde"), pod(1, "us-east", "db-0"), pod(1, "eu-west", "web-5d4f7b9c8-klmno")},
		"cpu":     {pod(0.01, "us-east", "web-5d4f7b9c8-abcde"), pod(0.02, "us-east", "web-5d4f7b9c8-fghij"), pod(0.5, "us-east", "gone-pod")},
		"memory":  {pod(1e7, "us-east", "web-5d4f7b9c8-abcde")},
	})
	want := []WorkloadTop{
		{Cluster: "eu-west", Namespace: "demo", Kind: "Deployment", Name: "web", Pods: 1, Running: 1, CPU: -1, Memory: -1},
		{Cluster: "us-east", Namespace: "demo", Kind: "Deployment", Name: "web", Pods: 2, Running: 1, CPU: 0.03, Memory: 1e7},
		{Cluster: "us-east", Namespace: "demo", Kind: "Pod", Name: "debug", Pods: 1, Running: 0, CPU: -1, Memory: -1},
		{Cluster: "us-east", Namespace: "demo", Kind: "StatefulSet", Name: "db", Pods: 1, Running: 1, CPU: -1, Memory: -1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestTopWorkloadsQueries(t *testing.T) {
	q := TopWorkloadsQueries("demo", "us-east")
	if want := `kube_pod_status_phase{namespace="demo", cluster="us-east", phase="Running"} == 1`; q["running"] != want {
		t.Errorf("running: %s, want %s", q["running"], want)
	}
	if want := `kube_pod_owner{}`; TopWorkloadsQueries("", "")["owners"] != want {
		t.Errorf("owners of every namespace: %s, want %s", TopWorkloadsQueries("", "")["owners"], want)
	}
}

package edge

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestAllocate(t *testing.T) {
	a := netip.MustParseAddr
	prefix := netip.MustParsePrefix("127.77.0.0/30")
	for _, tc := range []struct {
		name            string
		pools           []string
		held, requested map[string]netip.Addr
		want            map[string]netip.Addr
		refused         map[string]string
	}{
		{name: "lowest free, in name order, not the network's address",
			pools: []string{"shop/edge", "blog/edge"},
			want:  map[string]netip.Addr{"blog/edge": a("127.77.0.1"), "shop/edge": a("127.77.0.2")}},
		{name: "a held address stays, others fill around it",
			pools: []string{"blog/edge", "shop/edge"}, held: map[string]netip.Addr{"shop/edge": a("127.77.0.1")},
			want: map[string]netip.Addr{"blog/edge": a("127.77.0.2"), "shop/edge": a("127.77.0.1")}},
		{name: "a request for a held address is refused; the holder keeps it",
			pools: []string{"blog/edge", "shop/edge"}, held: map[string]netip.Addr{"shop/edge": a("127.77.0.1")},
			requested: map[string]netip.Addr{"blog/edge": a("127.77.0.1")},
			want:      map[string]netip.Addr{"shop/edge": a("127.77.0.1")},
			refused:   map[string]string{"blog/edge": "address 127.77.0.1 is taken by Gateway shop/edge"}},
		{name: "a pool moves to the address it requests; outside the range is refused",
			pools: []string{"blog/edge", "shop/edge"}, held: map[string]netip.Addr{"shop/edge": a("127.77.0.1")},
			requested: map[string]netip.Addr{"shop/edge": a("127.77.0.2"), "blog/edge": a("10.0.0.1")},
			want:      map[string]netip.Addr{"shop/edge": a("127.77.0.2")},
			refused:   map[string]string{"blog/edge": "address 10.0.0.1 is outside the edge's range 127.77.0.0/30"}},
		{name: "a pool that asks to move keeps its old address taken; one whose request fails keeps its own",
			pools: []string{"a/x", "b/x", "c/x"}, held: map[string]netip.Addr{"a/x": a("127.77.0.1"), "b/x": a("127.77.0.2"), "gone/x": a("127.77.0.3")},
			requested: map[string]netip.Addr{"a/x": a("127.77.0.2")},
			want:      map[string]netip.Addr{"b/x": a("127.77.0.2")},
			refused:   map[string]string{"a/x": "address 127.77.0.2 is taken by Gateway b/x", "c/x": "the edge's range 127.77.0.0/30 has no free address left"}},
		{name: "the range runs out; a held address out of a changed range is given again",
			pools: []string{"a/x", "b/x", "c/x"}, held: map[string]netip.Addr{"c/x": a("10.1.1.1")},
			want:    map[string]netip.Addr{"a/x": a("127.77.0.1"), "b/x": a("127.77.0.2")},
			refused: map[string]string{"c/x": "the edge's range 127.77.0.0/30 has no free address left"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, refused := Allocate(prefix, tc.pools, tc.held, tc.requested)
			if tc.refused == nil {
				tc.refused = map[string]string{}
			}
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(refused, tc.refused) {
				t.Errorf("got %v, refused %v; want %v, refused %v", got, refused, tc.want, tc.refused)
			}
		})
	}
}

func TestSpecRoundTrip(t *testing.T) {
	p := Pool{Name: "shop/edge", Limits: Limits{MaxConnections: 10, RequestsPerSecond: 5}, Listeners: []Listener{
		{Name: "http", Port: 8080, Protocol: HTTP, Routes: []Route{{Name: "shop/web/0/http", Hostnames: []string{"a.example"}, PathPrefix: "/", Timeout: 2 * time.Second,
			Backend: Backend{HealthPath: "/healthz", Clusters: []ClusterServers{{Cluster: "us-east", Servers: []Server{{Addr: netip.MustParseAddrPort("10.77.0.2:30080"), Weight: 2}}}}}}}},
		{Name: "pg", Port: 5432, Protocol: TCP, Routes: []Route{{Name: "shop/pg/0/pg"}}},
	}}
	back, addr, err := FromSpec(ToSpec(p, netip.MustParseAddr("127.77.0.1")))
	if err != nil || addr != netip.MustParseAddr("127.77.0.1") || !reflect.DeepEqual(back, p) {
		t.Fatalf("round trip: %v %v %#v", err, addr, back)
	}
	s := ToSpec(p, netip.MustParseAddr("127.77.0.1"))
	s.Listeners[0].Routes[0].Clusters[0].Servers = "10.77.0.2*2"
	if _, _, err := FromSpec(s); err == nil {
		t.Fatal("a server without a port was taken")
	}
}

func TestSameShape(t *testing.T) {
	pool := func(path, cluster string, weight int) Pool {
		return Pool{Name: "a/b", Listeners: []Listener{{Name: "http", Port: 80, Protocol: HTTP, Routes: []Route{{Name: "a/r/0/http", PathPrefix: path,
			Backend: Backend{Clusters: []ClusterServers{{Cluster: cluster, Servers: []Server{{Addr: netip.MustParseAddrPort("10.77.0.2:30080"), Weight: weight}}}}}}}}}}
	}
	base := pool("/", "us-east", 4)
	for _, tc := range []struct {
		other Pool
		same  bool
	}{
		{pool("/", "us-east", 8), true},
		{pool("/v2", "us-east", 4), false},
		{pool("/", "eu-west", 4), false},
	} {
		if got := SameShape(base, tc.other); got != tc.same {
			t.Errorf("SameShape(%+v) = %v, want %v", tc.other.Listeners[0].Routes[0], got, tc.same)
		}
	}
	if base.Listeners[0].Routes[0].Backend.Clusters[0].Servers == nil {
		t.Error("SameShape changed its argument")
	}
}

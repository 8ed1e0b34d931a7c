package edge

import (
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/convoy-dev/convoy/internal/transcript"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

// TestTranscripts runs the data-driven transcripts in testdata/. Commands:
//
//	pool NAME [maxconn=N] [rate=N]      then one line per listener, route or cluster's servers:
//	listener NAME port=P proto=HTTP|TCP
//	route NAME listener=L [hosts=H,H] [path=/P] [health=/P]
//	servers ROUTE CLUSTER [ADDR:PORT*WEIGHT ...]
//	render                              the configuration, with the slots of the last assign
//	assign                              places the pool's servers; prints reload or the commands,
//	                                    and keeps the slots as HAProxy's from then on
//	slots                               the slots, one line per cluster of a backend
//
// and the commands of resolver (resolve_test.go), which turn Gateway API objects into pools.
//
// go test -run TestTranscripts -update rewrites the expected output; review the diff.
func TestTranscripts(t *testing.T) {
	transcript.Run(t, *update, func(t *testing.T) func([]string) string {
		var pool Pool
		var slots Slots
		res := &resolver{t: t}
		return func(input []string) string {
			if out, ok := res.do(input); ok {
				return out
			}
			fields := strings.Fields(input[0])
			switch fields[0] {
			case "pool":
				pool = parsePool(t, input)
				if err := pool.Validate(); err != nil {
					return "invalid: " + strings.ReplaceAll(err.Error(), "\n", "\ninvalid: ")
				}
				return "ok"
			case "render":
				var out []string
				for _, l := range strings.Split(Render(pool, slots, testOptions), "\n") {
					if l != "" {
						out = append(out, l)
					}
				}
				return strings.Join(out, "\n")
			case "assign":
				next, cmds, reload := Assign(slots, pool)
				slots = next
				if reload {
					return "reload"
				}
				if len(cmds) == 0 {
					return "no change"
				}
				return strings.Join(cmds, "\n")
			case "slots":
				var out []string
				for _, be := range slices.Sorted(maps.Keys(slots)) {
					for _, c := range slices.Sorted(maps.Keys(slots[be])) {
						var ss []string
						for _, s := range slots[be][c] {
							if !s.Addr.IsValid() {
								ss = append(ss, "-")
								continue
							}
							ss = append(ss, fmt.Sprintf("%s*%d", s.Addr, s.Weight))
						}
						out = append(out, fmt.Sprintf("%s %s: %s", be, c, strings.Join(ss, " ")))
					}
				}
				return strings.Join(out, "\n")
			}
			t.Fatalf("unknown command %q", fields[0])
			return ""
		}
	})
}

var testOptions = Options{Bind: "127.0.0.1", Socket: "/run/edge/admin.sock", StateFile: "/run/edge/state", Metrics: "127.0.0.1:9101"}

func parsePool(t *testing.T, input []string) Pool {
	args := func(fields []string) map[string]string {
		m := map[string]string{}
		for _, f := range fields {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		return m
	}
	num := func(s string) int {
		if s == "" {
			return 0
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	head := strings.Fields(input[0])
	a := args(head[2:])
	p := Pool{Name: head[1], Limits: Limits{MaxConnections: num(a["maxconn"]), RequestsPerSecond: num(a["rate"])}}
	route := func(name string) *Route {
		for i := range p.Listeners {
			for j := range p.Listeners[i].Routes {
				if p.Listeners[i].Routes[j].Name == name {
					return &p.Listeners[i].Routes[j]
				}
			}
		}
		t.Fatalf("no route %s", name)
		return nil
	}
	for _, line := range input[1:] {
		f := strings.Fields(line)
		switch f[0] {
		case "listener":
			a := args(f[2:])
			p.Listeners = append(p.Listeners, Listener{Name: f[1], Port: num(a["port"]), Protocol: Protocol(a["proto"])})
		case "route":
			a := args(f[2:])
			r := Route{Name: f[1], PathPrefix: a["path"], Backend: Backend{HealthPath: a["health"]}}
			if a["hosts"] != "" {
				r.Hostnames = strings.Split(a["hosts"], ",")
			}
			for i := range p.Listeners {
				if p.Listeners[i].Name == a["listener"] {
					p.Listeners[i].Routes = append(p.Listeners[i].Routes, r)
				}
			}
		case "servers":
			r := route(f[1])
			cs := ClusterServers{Cluster: f[2]}
			for _, s := range f[3:] {
				addr, weight, _ := strings.Cut(s, "*")
				ap, err := netip.ParseAddrPort(addr)
				if err != nil {
					ap = netip.AddrPort{} // Validate reports it
				}
				cs.Servers = append(cs.Servers, Server{Addr: ap, Weight: num(weight)})
			}
			r.Backend.Clusters = append(r.Backend.Clusters, cs)
		default:
			t.Fatalf("unknown pool line %q", line)
		}
	}
	return p
}

// TestHAProxyAcceptsTheConfiguration checks what Render gives with HAProxy itself (haproxy -c),
// for every pool of the transcripts, with its servers assigned.
func TestHAProxyAcceptsTheConfiguration(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy is not installed (make deps installs it)")
	}
	files, _ := filepath.Glob("testdata/*.txt")
	checked := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, blocks, err := transcript.Parse(string(raw))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			if !strings.HasPrefix(b.Input[0], "pool ") || b.Want != "ok" {
				continue
			}
			haproxyCheck(t, parsePool(t, b.Input))
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no valid pool in testdata/ to check")
	}
}

// CarryState keeps the state of the servers that keep their slot's address, and drops the
// state of slots that change, so that the new configuration decides them.
func TestCarryState(t *testing.T) {
	state := `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 be:shop:web:0 1 east:1 10.77.0.2 2 0 3 3 10 6 3 4 6 0 0 0 - 30080 - 0 0 - - 0
3 be:shop:web:0 2 east:2 127.0.0.1 0 1 1 1 10 1 0 0 14 0 0 0 - 9 - 0 0 - - 0
3 be:shop:web:0 3 east:3 10.77.0.3 2 0 1 1 10 6 3 4 6 0 0 0 - 30080 - 0 0 - - 0
3 be:shop:web:0 4 east:4 10.77.0.4 2 0 1 1 10 6 3 4 6 0 0 0 - 30081 - 0 0 - - 0
4 be:gone:0 1 east:1 10.77.0.2 2 0 1 1 10 6 3 4 6 0 0 0 - 30080 - 0 0 - - 0
`
	next := Slots{"be:shop:web:0": {"east": {
		{Addr: netip.MustParseAddrPort("10.77.0.2:30080"), Weight: 3}, // kept
		{Addr: netip.MustParseAddrPort("10.77.0.9:30080"), Weight: 1}, // new in a free slot
		{}, // freed
		{Addr: netip.MustParseAddrPort("10.77.0.4:30080"), Weight: 1}, // another port
	}}}
	got := CarryState(state, next)
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], " east:1 10.77.0.2 ") {
		t.Errorf("CarryState kept:\n%s\nwant the version, the header and east:1 only", got)
	}
}

// haproxyCheck has HAProxy check the configuration of a valid pool, with its servers assigned,
// when haproxy is installed.
func haproxyCheck(t *testing.T, p Pool) {
	t.Helper()
	haproxy, err := exec.LookPath("haproxy")
	if err != nil || p.Validate() != nil {
		return
	}
	slots, _, _ := Assign(nil, p)
	dir := t.TempDir()
	o := Options{Bind: "127.0.0.1", Socket: filepath.Join(dir, "admin.sock"), StateFile: filepath.Join(dir, "state"), Metrics: "127.0.0.1:9101"}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(Render(p, slots, o)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(haproxy, "-c", "-q", "-f", cfg).CombinedOutput(); err != nil {
		t.Errorf("pool %s: haproxy -c: %v\n%s\n%s", p.Name, err, out, Render(p, slots, o))
	}
}

package edge

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Slots are the server slots of a pool's backends as HAProxy holds them: backend name →
// cluster → slots, where slot i is server CLUSTER:i+1 and a zero Server is an unused slot (in
// maintenance). A cluster has a fixed number of slots between reloads, so that servers come
// and go through the Runtime API.
type Slots map[string]map[string][]Server

// Assign places a pool's servers in slots, starting from prev (what HAProxy holds now; nil at
// first). A server already in a slot stays in it, with its health and connections; a new one
// takes the lowest free slot of its cluster; the slot of one that left is freed. It returns
// the new slots and either the Runtime API commands that take HAProxy from prev to them, or
// reload: a backend or cluster that prev lacks or no longer needs, or a cluster with more
// servers than slots, changes the configuration itself. Then the new slots are sized anew
// (slotsFor), and commands is nil.
func Assign(prev Slots, p Pool) (next Slots, commands []string, reload bool) {
	next = Slots{}
	for _, l := range p.Listeners {
		for _, r := range l.Routes {
			name := backendName(r.Name)
			next[name] = map[string][]Server{}
			for _, c := range r.Backend.Clusters {
				old, had := prev[name][c.Cluster]
				size := len(old)
				if !had || len(c.Servers) > size {
					reload = true
					size = max(size, slotsFor(len(c.Servers)))
				}
				next[name][c.Cluster] = place(old, c.Servers, size)
			}
			if len(next[name]) != len(prev[name]) {
				reload = true // a cluster left
			}
		}
	}
	if len(next) != len(prev) {
		reload = true // a backend left
	}
	if reload {
		return next, nil, true
	}
	for _, be := range slices.Sorted(maps.Keys(next)) {
		for _, cluster := range slices.Sorted(maps.Keys(next[be])) {
			old, now := prev[be][cluster], next[be][cluster]
			for i := range now {
				commands = append(commands, change(be+"/"+serverName(cluster, i+1), old[i], now[i])...)
			}
		}
	}
	return next, commands, false
}

// place puts servers into size slots, keeping those already in old where they are.
func place(old, servers []Server, size int) []Server {
	slots := make([]Server, size)
	byAddr := map[string]Server{}
	for _, s := range servers {
		byAddr[s.Addr.String()] = s
	}
	for i, s := range old {
		if i >= size || !s.Addr.IsValid() {
			continue
		}
		if want, ok := byAddr[s.Addr.String()]; ok {
			slots[i] = want
			delete(byAddr, s.Addr.String())
		}
	}
	rest := slices.SortedFunc(maps.Values(byAddr), func(a, b Server) int { return cmp.Compare(a.Addr.String(), b.Addr.String()) })
	for i := range slots {
		if len(rest) == 0 {
			break
		}
		if !slots[i].Addr.IsValid() {
			slots[i], rest = rest[0], rest[1:]
		}
	}
	return slots
}

// change is the Runtime API commands that take one server slot from was to now.
func change(server string, was, now Server) []string {
	switch {
	case was == now:
		return nil
	case !now.Addr.IsValid(): // freed: no new requests; those under way finish
		return []string{fmt.Sprintf("set server %s state maint", server)}
	case was.Addr == now.Addr:
		return []string{fmt.Sprintf("set server %s weight %d", server, now.Weight)}
	}
	cmds := []string{
		fmt.Sprintf("set server %s addr %s port %d", server, now.Addr.Addr(), now.Addr.Port()),
		fmt.Sprintf("set server %s weight %d", server, now.Weight),
	}
	if !was.Addr.IsValid() {
		cmds = append(cmds, fmt.Sprintf("set server %s state ready", server))
	}
	return cmds
}

// CarryState is the part of HAProxy's server state (`show servers state`, taken before a
// reload) that the new workers may take over: the lines of the servers that keep their slot's
// address in next, with their health and maintenance state, and next's weight. A slot that changes (a new
// server, or one freed) starts as the new configuration says, or the old state would undo it.
func CarryState(state string, next Slots) string {
	var out []string
	for n, line := range strings.Split(strings.TrimRight(state, "\n"), "\n") {
		f := strings.Fields(line)
		if n == 0 || strings.HasPrefix(line, "#") { // the format's version, the header
			out = append(out, line)
			continue
		}
		// be_id be_name srv_id srv_name srv_addr ... srv_port (the 19th field) ...
		if len(f) < 19 {
			continue
		}
		cluster, slot, ok := strings.Cut(f[3], ":")
		i, err := strconv.Atoi(slot)
		if !ok || err != nil {
			continue
		}
		slots := next[f[1]][cluster]
		if i < 1 || i > len(slots) || !slots[i-1].Addr.IsValid() {
			continue
		}
		if s := slots[i-1]; s.Addr.Addr().String() == f[4] && strconv.Itoa(int(s.Addr.Port())) == f[18] {
			// The weight is the new configuration's: HAProxy would keep the saved one.
			f[7] = strconv.Itoa(s.Weight)
			out = append(out, strings.Join(f, " "))
		}
	}
	return strings.Join(out, "\n") + "\n"
}

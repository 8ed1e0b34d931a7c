package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A binding is one service bound to the app as the Service Binding spec projects it: a
// directory under $SERVICE_BINDING_ROOT with one file per key (type, host, port, password...).
type binding struct {
	name string
	keys map[string]string
}

// bindings reads $SERVICE_BINDING_ROOT anew on each call: the projection may change while the
// app runs.
func bindings() []binding {
	root := os.Getenv("SERVICE_BINDING_ROOT")
	if root == "" {
		return nil
	}
	dirs, _ := os.ReadDir(root)
	var out []binding
	for _, d := range dirs {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		b := binding{name: d.Name(), keys: map[string]string{}}
		files, _ := os.ReadDir(filepath.Join(root, d.Name()))
		for _, f := range files {
			if strings.HasPrefix(f.Name(), ".") {
				continue // the Secret volume's own ..data links
			}
			if raw, err := os.ReadFile(filepath.Join(root, d.Name(), f.Name())); err == nil {
				b.keys[f.Name()] = strings.TrimSpace(string(raw))
			}
		}
		out = append(out, b)
	}
	return out
}

// visits counts a visit in the bound Redis and says how many there were.
func (s *server) visits(w http.ResponseWriter, r *http.Request) {
	for _, b := range bindings() {
		if b.keys["type"] != "redis" {
			continue
		}
		addr := net.JoinHostPort(b.keys["host"], b.keys["port"])
		c := redis.NewClient(&redis.Options{Addr: addr, Password: b.keys["password"], DialTimeout: 2 * time.Second, MaxRetries: 1})
		defer c.Close()
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		n, err := c.Incr(ctx, "visits").Result()
		if err != nil {
			http.Error(w, fmt.Sprintf("web: counting in redis at %s (binding %s): %v", addr, b.name, err), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "visits: %d (redis at %s, binding %s; %s)\n", n, addr, b.name, s.id)
		return
	}
	http.Error(w, "web: no service is bound to count visits in; bind a redis (README, \"The service catalog\")", http.StatusServiceUnavailable)
}

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

	"github.com/jackc/pgx/v5"
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

// visits counts a visit in the bound PostgreSQL, else the bound Redis, and says how many there
// were.
func (s *server) visits(w http.ResponseWriter, r *http.Request) {
	bs := bindings()
	for _, b := range bs {
		if b.keys["type"] == "postgresql" {
			s.visitsPostgres(w, r, b)
			return
		}
	}
	for _, b := range bs {
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
	http.Error(w, "web: no service is bound to count visits in; bind a redis or a postgres (README, \"The service catalog\")", http.StatusServiceUnavailable)
}

// visitsPostgres counts a visit in a table of the bound PostgreSQL database.
func (s *server) visitsPostgres(w http.ResponseWriter, r *http.Request, b binding) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	where := net.JoinHostPort(b.keys["host"], b.keys["port"])
	conn, err := pgx.Connect(ctx, b.keys["uri"])
	if err != nil {
		http.Error(w, fmt.Sprintf("web: connecting to postgresql at %s (binding %s): %v", where, b.name, err), http.StatusServiceUnavailable)
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The count before the insert is what RETURNING's subquery sees.
	var n int64
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS visits (n int)")
	if err == nil {
		err = conn.QueryRow(ctx, "INSERT INTO visits (n) VALUES (1) RETURNING (SELECT count(*) + 1 FROM visits)").Scan(&n)
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("web: counting in postgresql at %s (binding %s): %v", where, b.name, err), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "visits: %d (postgresql at %s, binding %s; %s)\n", n, where, b.name, s.id)
}

// Package registry is the fleet's image registry: CNCF distribution v3, run as a library in
// the hub with its storage in the hub's data dir, on a loopback port that real nodes reach
// through the fleet bridge. Images are named registry.convoy.local/REPO:TAG; every real node's
// containerd pulls that host (and docker.io, ghcr.io, quay.io, registry.k8s.io) from it.
//
// It also pushes to, and lists, a registry at an address: Push, EnsureFromBinary and List are
// what the hub (its own images), the local provider and `convoy image` use. The hub, the local
// provider and the CLI import it.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the storage driver
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sirupsen/logrus"

	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/version"
)

// Host is the registry's name in image references.
const Host = "registry.convoy.local"

// ConvoyImage is Convoy's own image, as the hub pushes it from its executable and the agent's
// Deployment (convoy cluster join) names it: registry.convoy.local/convoy/convoy:VERSION.
func ConvoyImage() string {
	tag := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, version.Convoy)
	return Host + "/convoy/convoy:" + strings.TrimLeft(tag, ".-")
}

// Mirrored are the registries whose images real nodes pull from the fleet registry instead:
// this machine reaches no registry outside, so `nginx:1.27` means the fleet's library/nginx.
var Mirrored = []string{Host, "docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io"}

// Server is a running registry.
type Server struct {
	addr string
	app  http.Handler
	srv  *http.Server
	done chan error

	pullAddr string
	pulls    *http.Server
}

// Start serves a registry that stores its blobs and manifests under dir, on addr (host:port;
// port 0 picks a free one).
func Start(ctx context.Context, dir, addr string, log *slog.Logger) (*Server, error) {
	// distribution logs through logrus' standard logger: into ours, with what a client asks
	// for and the registry has not (which every push does first) at debug level.
	registryLog.Store(log)
	hookOnce.Do(func() {
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.WarnLevel)
		logrus.AddHook(logHook{})
	})
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem":  configuration.Parameters{"rootdirectory": dir},
			"delete":      configuration.Parameters{"enabled": true},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": true, "age": "24h", "interval": "1h", "dryrun": false}},
		},
	}
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	cfg.Catalog.MaxEntries = 100
	cfg.Log.AccessLog.Disabled = true
	app := handlers.NewApp(ctx, cfg)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fleet registry on %s: %w", addr, err)
	}
	s := &Server{addr: l.Addr().String(), app: app, done: make(chan error, 1),
		srv: &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}}
	go func() { s.done <- s.srv.Serve(l) }()
	log.Info("fleet registry serving", "addr", s.addr, "storage", dir)
	return s, nil
}

// logHook passes distribution's log entries to the last started registry's logger.
type logHook struct{}

var (
	registryLog atomic.Pointer[slog.Logger]
	hookOnce    sync.Once
)

func (logHook) Levels() []logrus.Level { return logrus.AllLevels }

func (logHook) Fire(e *logrus.Entry) error {
	level := slog.LevelWarn
	if code := fmt.Sprint(e.Data["err.code"]); strings.HasSuffix(code, "unknown") { // blob, manifest unknown
		level = slog.LevelDebug
	}
	registryLog.Load().Log(context.Background(), level, "fleet registry: "+e.Message, "err", e.Data["err.message"], "detail", e.Data["err.detail"],
		"uri", e.Data["http.request.uri"])
	return nil
}

// Addr is where the registry serves (host:port).
func (s *Server) Addr() string { return s.addr }

// ServePulls serves the registry read-only on a second address (host:port; port 0 picks a free
// one): the one real nodes reach through the fleet network, where any pod could otherwise push
// over the images of every cluster (Convoy's own, the pause image). It returns the address.
func (s *Server) ServePulls(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fleet registry, read-only, on %s: %w", addr, err)
	}
	s.pullAddr = l.Addr().String()
	s.pulls = &http.Server{Handler: readOnly(s.app), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.pulls.Serve(l) }()
	return s.pullAddr, nil
}

// PullAddr is where the registry serves read-only (see ServePulls), or "".
func (s *Server) PullAddr() string { return s.pullAddr }

// readOnly passes only reads to h.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			fmt.Fprintf(w, `{"errors":[{"code":"DENIED","message":"the fleet registry is read-only from the fleet network; push with convoy image push on the hub's machine"}]}`+"\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Close stops the registry.
func (s *Server) Close(ctx context.Context) error {
	if s.pulls != nil {
		_ = s.pulls.Shutdown(ctx)
	}
	err := s.srv.Shutdown(ctx)
	if e := <-s.done; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// Target is where an image named as pods name it (registry.convoy.local/web:1, nginx:1.27)
// lives in the registry at addr: the same repository path (library/nginx for docker.io's
// short names), on addr, over plain HTTP.
func Target(addr, ref string) (name.Tag, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image name %q: %w; write it as REPOSITORY[:TAG], for example %s/web:1", ref, err, Host)
	}
	if r := tag.RegistryStr(); !slices.Contains(Mirrored, r) && r != name.DefaultRegistry && r != addr {
		return name.Tag{}, fmt.Errorf("image %q is for registry %s, which real nodes do not pull from; name it %s/%s:%s", ref, r, Host, tag.RepositoryStr(), tag.TagStr())
	}
	return name.NewTag(addr+"/"+tag.RepositoryStr()+":"+tag.TagStr(), name.Insecure)
}

// Push puts img into the registry at addr under ref (see Target), blobs first and the
// manifest last, so that an image is either all there or not visible.
func Push(ctx context.Context, addr, ref string, img v1.Image) (v1.Hash, error) {
	t, err := Target(addr, ref)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(t, img, remote.WithContext(ctx)); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s to the fleet registry at %s: %w", ref, addr, err)
	}
	return img.Digest()
}

// EnsureFromBinary makes sure the registry at addr has ref as FromBinary makes it from
// binary (and b.Companions): it pushes only when the image there was made from another
// binary or other companions, or is missing.
// It says whether it pushed.
func EnsureFromBinary(ctx context.Context, addr, ref, binary string, b image.Build) (bool, error) {
	sum, err := image.BinarySum(binary)
	if err != nil {
		return false, err
	}
	companions, err := image.CompanionsSum(b.Companions)
	if err != nil {
		return false, err
	}
	t, err := Target(addr, ref)
	if err != nil {
		return false, err
	}
	if have, err := remote.Image(t, remote.WithContext(ctx)); err == nil {
		if cf, err := have.ConfigFile(); err == nil && cf.Config.Labels[image.LabelBinary] == sum && cf.Config.Labels[image.LabelCompanions] == companions {
			return false, nil
		}
	} else if !notFound(err) {
		return false, fmt.Errorf("look up %s in the fleet registry at %s: %w", ref, addr, err)
	}
	img, err := image.FromBinary(binary, b)
	if err != nil {
		return false, err
	}
	_, err = Push(ctx, addr, ref, img)
	return err == nil, err
}

func notFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// Entry is one tag of the registry.
type Entry struct {
	// Name is the image as pods name it: registry.convoy.local/REPO:TAG.
	Name    string
	Digest  string
	Size    int64 // of the manifest, the configuration and the layers, compressed
	Created time.Time
}

// List lists every tag of every repository of the registry at addr.
func List(ctx context.Context, addr string) ([]Entry, error) {
	repos, err := Repositories(ctx, addr)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, repo := range repos {
		r, err := name.NewRepository(addr+"/"+repo, name.Insecure)
		if err != nil {
			return nil, err
		}
		tags, err := remote.List(r, remote.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("list tags of %s: %w", repo, err)
		}
		for _, tag := range tags {
			e := Entry{Name: Host + "/" + repo + ":" + tag}
			img, err := remote.Image(r.Tag(tag), remote.WithContext(ctx))
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", e.Name, err)
			}
			if d, err := img.Digest(); err == nil {
				e.Digest = d.String()
			}
			if m, err := img.Manifest(); err == nil {
				e.Size = m.Config.Size
				for _, l := range m.Layers {
					e.Size += l.Size
				}
			}
			if cf, err := img.ConfigFile(); err == nil {
				e.Created = cf.Created.Time
			}
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Labels reads the configuration labels of image ref (as pods name it) in the registry at
// addr; an error for an image it does not hold.
func Labels(ctx context.Context, addr, ref string) (map[string]string, error) {
	t, err := Target(addr, ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(t, remote.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	return cf.Config.Labels, nil
}

// Repositories lists the repositories of the registry at addr.
func Repositories(ctx context.Context, addr string) ([]string, error) {
	reg, err := name.NewRegistry(addr, name.Insecure)
	if err != nil {
		return nil, err
	}
	// distribution serves at most 100 repositories a page.
	var repos []string
	for last := ""; ; {
		page, err := remote.CatalogPage(reg, last, 100, remote.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("list the fleet registry at %s: %w", addr, err)
		}
		repos = append(repos, page...)
		if len(page) < 100 {
			return repos, nil
		}
		last = page[len(page)-1]
	}
}

// Package archtest checks the package table in docs/ARCHITECTURE.md against the code, so that
// the table cannot drift: every package of the module is in it and nothing else is, every
// import between the module's packages (test files aside) is one the table allows, and a pure
// package reaches no client package and no package that is not pure. It holds only this test.
package archtest

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/convoy-dev/convoy/"

// clients are the packages (and everything under them) that talk to an API server; a pure
// package must not reach them.
var clients = []string{"k8s.io/client-go/", "sigs.k8s.io/controller-runtime"}

type row struct {
	pure       bool
	importedBy []string // patterns: a package, "dir/..." for a subtree, or "anyone"
	line       int
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func TestPackageTable(t *testing.T) {
	root := repoRoot(t)
	rows := parseTable(t, filepath.Join(root, "docs", "ARCHITECTURE.md"))
	pkgs := list(t, root)

	seen := map[string]bool{}
	for _, p := range pkgs {
		name := strings.TrimPrefix(p.ImportPath, module)
		seen[name] = true
		if name == "internal/archtest" {
			continue
		}
		if _, ok := rows[name]; !ok {
			t.Errorf("package %s is not in the table of docs/ARCHITECTURE.md; add a row that says what it owns and who imports it", name)
		}
	}
	for name, r := range rows {
		if !seen[name] {
			t.Errorf("docs/ARCHITECTURE.md:%d lists package %s, which does not exist", r.line, name)
		}
	}

	for _, p := range pkgs {
		from := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range p.Imports {
			to, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			r, listed := rows[to]
			if listed && !allowed(r.importedBy, from) {
				t.Errorf("%s imports %s, but docs/ARCHITECTURE.md:%d says it is imported by %s; change the import or the table",
					from, to, r.line, strings.Join(r.importedBy, ", "))
			}
		}
		r, listed := rows[from]
		if !listed || !r.pure {
			continue
		}
		for _, dep := range p.Deps {
			if slices.ContainsFunc(clients, func(c string) bool { return strings.HasPrefix(dep, c) }) {
				t.Errorf("pure package %s reaches the client package %s", from, dep)
			}
			if to, ok := strings.CutPrefix(dep, module); ok {
				if dr, ok := rows[to]; ok && !dr.pure {
					t.Errorf("pure package %s reaches %s, which is not pure", from, to)
				}
			}
		}
	}
}

// allowed says whether a package may import one whose importers are patterns.
func allowed(patterns []string, from string) bool {
	for _, p := range patterns {
		switch {
		case p == "anyone", p == from:
			return true
		case strings.HasSuffix(p, "/..."):
			dir := strings.TrimSuffix(p, "/...")
			if from == dir || strings.HasPrefix(from, dir+"/") {
				return true
			}
		}
	}
	return false
}

// parseTable reads the rows of the "## Packages" table: | `pkg` | owns | pure | imported by |.
// The names in backticks of the last column are the importers; "anyone" allows all; other
// words (tests only, nothing) allow none.
func parseTable(t *testing.T, path string) map[string]row {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]row{}
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Packages"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4 {
			t.Fatalf("docs/ARCHITECTURE.md:%d: a package row needs 4 cells (package, owns, pure, imported by), has %d", n, len(cells))
		}
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		r := row{line: n}
		switch strings.TrimSpace(cells[2]) {
		case "yes":
			r.pure = true
		case "no":
		default:
			t.Fatalf("docs/ARCHITECTURE.md:%d: the pure column says yes or no, not %q", n, cells[2])
		}
		by := cells[3]
		if strings.Contains(by, "anyone") {
			r.importedBy = append(r.importedBy, "anyone")
		}
		for parts := strings.Split(by, "`"); len(parts) > 2; parts = parts[2:] {
			r.importedBy = append(r.importedBy, parts[1])
		}
		if _, dup := rows[name]; dup {
			t.Errorf("docs/ARCHITECTURE.md:%d lists %s twice", n, name)
		}
		rows[name] = r
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("docs/ARCHITECTURE.md has no package table under ## Packages")
	}
	return rows
}

// list runs go list on the module: each package with its imports and all its dependencies,
// test files aside.
func list(t *testing.T, root string) []pkg {
	cmd := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

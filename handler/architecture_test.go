package handler_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/mcp-relay/mcp-relay"

// listedPackage is what `go list -json` tells of a package.
type listedPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Deps       []string
}

// goList runs `go list -json` with args from the module's root.
func goList(t *testing.T, args ...string) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestRoomsStandAlone: the packages under handler/ (its rooms: the
// replica machinery, the access rules) are imported by handler, never the
// other way round, and know nothing of Kong: neither handler, nor kong/
// (the PDK adapter), nor go-pdk is among their dependencies.
func TestRoomsStandAlone(t *testing.T) {
	rooms := goList(t, "-deps=false", "./handler/...")
	forbidden := []string{module + "/handler", module + "/kong", "github.com/Kong/go-pdk"}
	n := 0
	for _, room := range rooms {
		if room.ImportPath == module+"/handler" {
			continue
		}
		n++
		deps := goList(t, room.ImportPath)[0].Deps
		for _, f := range forbidden {
			for _, dep := range deps {
				if dep == f || strings.HasPrefix(dep, f+"/") && f != module+"/handler" {
					t.Errorf("%s depends on %s (%s): a room under handler/ must not", room.ImportPath, f, dep)
					break
				}
			}
		}
	}
	if n < 2 {
		t.Errorf("found %d packages under handler/, want the replica and rules rooms at least", n)
	}
}

// TestNoHooks: no package of the plugin sets a variable of another
// package (an init() that installs a callback elsewhere is a back-channel
// the import graph does not show), and none exports a package-level hook:
// a func-typed variable, an atomic.Pointer or an atomic.Value. Callbacks
// are options given by the caller.
func TestNoHooks(t *testing.T) {
	for _, pkg := range goList(t, "./...") {
		if strings.HasPrefix(pkg.ImportPath, module+"/test/") {
			continue // the end-to-end tests and their tools
		}
		for _, name := range pkg.GoFiles {
			path := filepath.Join(pkg.Dir, name)
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, problem := range hookProblems(f) {
				t.Errorf("%s: %s", filepath.Join(pkg.ImportPath, name), problem)
			}
		}
	}
}

// hookProblems lists where file f sets another package's variable of this
// module, or exports a hook.
func hookProblems(f *ast.File) []string {
	ours := map[string]bool{} // names of the module's packages f imports
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if !strings.HasPrefix(path, module+"/") {
			continue
		}
		name := path[strings.LastIndex(path, "/")+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		ours[name] = true
	}
	// foreign reports a selector pkg.Name (possibly pkg.Name.Field...) on
	// a package of the module.
	foreign := func(e ast.Expr) (string, bool) {
		for {
			sel, ok := e.(*ast.SelectorExpr)
			if !ok {
				return "", false
			}
			if id, ok := sel.X.(*ast.Ident); ok && ours[id.Name] {
				return id.Name + "." + sel.Sel.Name, true
			}
			e = sel.X
		}
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for _, lhs := range n.Lhs {
				if v, ok := foreign(lhs); ok {
					out = append(out, "assigns "+v)
				}
			}
		case *ast.IncDecStmt:
			if v, ok := foreign(n.X); ok {
				out = append(out, "changes "+v)
			}
		case *ast.UnaryExpr:
			if v, ok := foreign(n.X); ok && n.Op == token.AND {
				out = append(out, "takes the address of "+v)
			}
		case *ast.CallExpr:
			// pkg.Hook.Store(...) and the like: atomic setters.
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
				switch sel.Sel.Name {
				case "Store", "Swap", "CompareAndSwap":
					if v, ok := foreign(sel.X); ok {
						out = append(out, "calls "+v+"."+sel.Sel.Name)
					}
				}
			}
		}
		return true
	})
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.VAR {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !name.IsExported() {
					continue
				}
				hook := isHookType(vs.Type)
				if vs.Type == nil && i < len(vs.Values) {
					_, hook = vs.Values[i].(*ast.FuncLit)
				}
				if hook {
					out = append(out, "exports the package-level hook "+name.Name)
				}
			}
		}
	}
	return out
}

// isHookType: a func type, an atomic.Pointer or an atomic.Value.
func isHookType(t ast.Expr) bool {
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	switch t := t.(type) {
	case *ast.FuncType:
		return true
	case *ast.SelectorExpr:
		if pkg, ok := t.X.(*ast.Ident); ok && pkg.Name == "atomic" {
			return t.Sel.Name == "Pointer" || t.Sel.Name == "Value"
		}
	}
	return false
}

package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The example in docs/sdk-go.md is a test file a new user could write: it runs in a fresh
// module that requires only the headwater package (through a replace to this checkout).
func TestDocumentedExampleRunsInAFreshModule(t *testing.T) {
	sdk, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(sdk, "../../docs/sdk-go.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Example\n.*?```go\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/sdk-go.md has no ## Example with a go block")
	}
	dir := t.TempDir()
	goMod := "module example.com/orders\n\ngo 1.22\n\n" +
		"require github.com/headwater/headwater-go v0.0.0\n\n" +
		"replace github.com/headwater/headwater-go => " + sdk + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "orders_test.go"), m[1], 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "test", "-count=1", "-v", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in a fresh module: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`stored at partition \d+ offset 0`).Match(out) || !strings.Contains(string(out), "--- PASS: TestOrdersRoundTrip") {
		t.Fatalf("the example did not run as documented:\n%s", out)
	}
}

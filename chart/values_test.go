package chart

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sigedge/sigedge/internal/config"
)

var update = flag.Bool("update", false, "rewrite the generated values tables of chart/README.md")

// value is one leaf of values.yaml: a scalar, a list or an empty map.
type value struct {
	path, def, doc string
	v              any
}

// readValues returns the leaves of values.yaml in file order, with their comments.
func readValues(t *testing.T) []value {
	t.Helper()
	b, err := os.ReadFile("values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var out []value
	// A block mapping is a group of values; a flow mapping ({a: 1}) is one value. A value without a
	// comment of its own takes its group's (its parent's only, not more distant ones').
	var walk func(n *yaml.Node, prefix, groupDoc string)
	walk = func(n *yaml.Node, prefix, groupDoc string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			own := comment(k, v)
			doc := own
			if doc == "" {
				doc = groupDoc
			}
			if v.Kind == yaml.MappingNode && len(v.Content) > 0 && v.Style&yaml.FlowStyle == 0 {
				walk(v, path, own)
				continue
			}
			var x any
			if err := v.Decode(&x); err != nil {
				t.Fatalf("values.yaml %s: %v", path, err)
			}
			out = append(out, value{path: path, def: inline(x), doc: doc, v: x})
		}
	}
	walk(doc.Content[0], "", "")
	return out
}

// comment is a value's description: the comment right above it (the paragraph that starts with
// "# --" for a single value, any for a group), and its line comment.
func comment(k, v *yaml.Node) string {
	var lines []string
	head := k.HeadComment
	if i := strings.LastIndex(head, "\n\n"); i >= 0 {
		head = head[i+2:] // only the paragraph right above the key
	}
	group := v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0
	if strings.HasPrefix(head, "# --") || group && head != "" {
		for _, l := range strings.Split(head, "\n") {
			l = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(l), "#"), " ")
			lines = append(lines, strings.TrimSpace(strings.TrimPrefix(l, "--")))
		}
	}
	for _, lc := range []string{k.LineComment, v.LineComment} {
		if lc != "" {
			lines = append(lines, strings.TrimSpace(strings.TrimPrefix(lc, "#")))
		}
	}
	return strings.Join(lines, " ")
}

// inline writes a default as the README shows it.
func inline(x any) string {
	switch v := x.(type) {
	case string:
		if v == "" {
			return `""`
		}
		return v
	case nil:
		return "null"
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(x)
	return strings.TrimSpace(b.String())
}

// TestValuesMirrorTheConfigSchema: values.yaml's config tree has every field of internal/config, no
// other, and the defaults of config.Default() except for the chart's documented production choices.
func TestValuesMirrorTheConfigSchema(t *testing.T) {
	schema := map[string]bool{}
	for _, kv := range config.EnvVars() {
		schema[kv[0]] = true
	}
	have := map[string]bool{}
	for _, v := range readValues(t) {
		if p, ok := strings.CutPrefix(v.path, "config."); ok {
			have[p] = true
			if !schema[p] {
				t.Errorf("values.yaml config.%s is not a configuration field (see internal/config)", p)
			}
		}
	}
	for p := range schema {
		if !have[p] {
			t.Errorf("values.yaml lacks config.%s: add it with its default and a comment (and run go test ./chart -run TestReadme -update)", p)
		}
	}

	b, err := os.ReadFile("values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Config yaml.Node `yaml:"config"`
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	cfgYAML, err := yaml.Marshal(&values.Config)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse(cfgYAML)
	if err != nil {
		t.Fatalf("values.yaml's config is refused by config.Parse: %v", err)
	}
	// The chart's choices for a production region; everything else must be config.Default()'s.
	want := config.Default()
	want.Log.Format = "json"
	want.NATS.Embedded = false
	want.NATS.URLs = []string{"nats://nats:4222"}
	want.NATS.DataDir = "/var/lib/sigedge/nats"
	want.NATS.Stream.Replicas = 3
	gotY, _ := yaml.Marshal(got)
	wantY, _ := yaml.Marshal(want)
	if !bytes.Equal(gotY, wantY) {
		t.Errorf("values.yaml's config differs from config.Default() beyond the chart's choices (update values.yaml):\n%s", lineDiff(string(wantY), string(gotY)))
	}
}

// lineDiff lists the lines only in want (-) or only in got (+), enough to name a drifted field.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

const (
	tableBegin = "<!-- values table: generated from values.yaml by `go test ./chart -run TestReadme -update` -->"
	tableEnd   = "<!-- end of values table -->"
)

// TestReadmeDocumentsEveryValue: chart/README.md's values table is values.yaml's, value by value, with
// defaults and descriptions (regenerate it with -update).
func TestReadmeDocumentsEveryValue(t *testing.T) {
	var order []string
	rows := map[string]*strings.Builder{}
	for _, v := range readValues(t) {
		if v.doc == "" {
			t.Errorf("values.yaml %s has no description: add a \"# --\" comment above it or a comment on its line", v.path)
		}
		top := "general"
		if parts := strings.Split(v.path, "."); len(parts) > 1 {
			top = parts[0]
			if top == "config" && len(parts) > 2 {
				top = "config." + parts[1]
			}
		}
		if rows[top] == nil {
			order = append(order, top)
			rows[top] = &strings.Builder{}
		}
		fmt.Fprintf(rows[top], "| `%s` | `%s` | %s |\n", v.path, strings.ReplaceAll(v.def, "|", `\|`), strings.ReplaceAll(v.doc, "|", `\|`))
	}
	var b strings.Builder
	for _, sec := range order {
		fmt.Fprintf(&b, "#### `%s`\n\n| Value | Default | Description |\n| --- | --- | --- |\n%s\n", sec, rows[sec])
	}
	table := tableBegin + "\n\n" + b.String() + tableEnd

	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i, j := strings.Index(s, tableBegin), strings.Index(s, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no values table markers (%q … %q)", tableBegin, tableEnd)
	}
	current := s[i : j+len(tableEnd)]
	if current == table {
		return
	}
	if *update {
		if err := os.WriteFile("README.md", []byte(s[:i]+table+s[j+len(tableEnd):]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("README.md values table rewritten")
		return
	}
	t.Errorf("README.md's values table is not values.yaml's: run go test ./chart -run TestReadme -update\n%s", lineDiff(current, table))
}

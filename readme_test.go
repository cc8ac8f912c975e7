package main

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ldapgate/ldapgate/app"
	"github.com/ldapgate/ldapgate/config"
)

// TestReadmeConfigReference keeps the README's configuration reference
// identical to config.example.yaml, and checks that the example has every
// key of the config structs, at its place (set, or commented out as
// "# key: value"). Keys are compared parsed, by their full path: a
// substring match let "timeout:" pass on "connect_timeout:".
func TestReadmeConfigReference(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- config.example.yaml:begin -->\n```yaml\n(.*?)```\n<!-- config.example.yaml:end -->").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README lacks the config.example.yaml block")
	}
	if string(m[1]) != string(example) {
		t.Fatal("README's configuration reference differs from config.example.yaml; copy the file into the README block")
	}
	documented, err := exampleKeys(example)
	if err != nil {
		t.Fatalf("config.example.yaml with its commented-out keys restored: %v", err)
	}
	want, maps := structKeys(reflect.TypeFor[config.Config](), "")
	for _, key := range want {
		if !documented[key] {
			t.Errorf("config key %q is not documented in config.example.yaml", key)
		}
	}
	for key := range documented {
		parent := key[:max(strings.LastIndexByte(key, '.'), 0)]
		if !slices.Contains(want, key) && !slices.Contains(maps, parent) {
			t.Errorf("config.example.yaml documents %q, which is no config key", key)
		}
	}
}

// commentedKey is a commented-out setting: "    # timeout: 30s".
var commentedKey = regexp.MustCompile(`(?m)^(\s*)# ([a-z_]+:(?: .*)?)$`)

// exampleKeys parses the example with its commented-out settings restored
// and returns every key path ("directories.tls.ca_file").
func exampleKeys(example []byte) (map[string]bool, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(commentedKey.ReplaceAll(example, []byte("$1$2")), &root); err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := prefix + n.Content[i].Value
				keys[k] = true
				walk(n.Content[i+1], k+".")
			}
		}
	}
	walk(&root, "")
	return keys, nil
}

// structKeys returns the yaml key paths of t's fields, and separately the
// paths of map fields (whose keys are data, such as role names).
func structKeys(t reflect.Type, prefix string) (keys, maps []string) {
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		keys = append(keys, key)
		ft := f.Type
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Map {
			if ft.Kind() == reflect.Map {
				maps = append(maps, key)
			}
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath() {
			k, m := structKeys(ft, key+".")
			keys, maps = append(keys, k...), append(maps, m...)
		}
	}
	return keys, maps
}

// TestReadmeShutdownBound: the drain bound the README states is the one
// app uses.
func TestReadmeShutdownBound(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("drain in-flight requests (%d s at\nmost", app.DefaultShutdownTimeout/time.Second)
	if !strings.Contains(string(readme), want) {
		t.Errorf("README does not say %q (app.DefaultShutdownTimeout)", want)
	}
}

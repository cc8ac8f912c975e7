package main

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/config"
)

// TestReadmeConfigReference keeps the README's configuration reference
// identical to config.example.yaml, and checks that the example mentions
// every key of the config structs (set or commented out).
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
	for _, key := range yamlKeys(reflect.TypeFor[config.Config]()) {
		if !regexp.MustCompile(`(?m)^[\s#-]*`+regexp.QuoteMeta(key)+`:`).Match(example) &&
			!strings.Contains(string(example), key+":") {
			t.Errorf("config key %q is not documented in config.example.yaml", key)
		}
	}
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		keys = append(keys, name)
		ft := f.Type
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Map {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath() {
			keys = append(keys, yamlKeys(ft)...)
		}
	}
	return keys
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxNodes bounds the YAML nodes visited, aliases included: a few lines of
// nested aliases ("billion laughs") would otherwise expand to gigabytes.
const maxNodes = 100_000

// maxFileSize bounds the config and secret files read; a config is a few
// kilobytes, and a *_file pointing at /dev/zero must not eat the memory.
const maxFileSize = 4 << 20

// Load reads, expands, decodes, defaults and validates the file at path.
// On any problem it returns a nil Config and an Errors listing them all.
func Load(path string) (*Config, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load on bytes already read; path names the file in messages and
// is the base of relative *_file and tls.ca_file paths (the working
// directory when path is empty).
//
// Steps, in order:
//   - YAML is parsed into nodes (yaml.v3), so every key keeps its line.
//   - ${VAR} in a value is replaced by the environment variable VAR. An unset
//     VAR is an error naming it and the line, unless written ${VAR:-default}
//     (default used when VAR is unset or empty, as in sh). $$ is a literal $;
//     any other $ is kept as is (so password hashes such as $argon2id$... need
//     no escaping). Expansion happens inside values after parsing, so a
//     variable's content is never read as YAML: a password with ": " or "#"
//     cannot change the file's structure.
//   - Unknown and duplicate keys are errors (a typo must not silently fall
//     back to a default), except keys starting with "x-", ignored anywhere
//     as a home for YAML anchors; merge keys (<<: *anchor) work.
//   - bind_password_file and admin_token_file are read (one trailing newline
//     trimmed) into bind_password and the admin token.
//   - Defaults are applied (ApplyDefaults), then everything is validated.
func Parse(data []byte, path string) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, Errors{syntaxError(err)}
	}
	// A second document would be ignored silently, like a typo'd key.
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, Errors{{Line: next.Line, Msg: "more than one YAML document (---): put everything in one"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, Errors{syntaxError(err)}
	}
	cfg := &Config{Path: path}
	d := &decoder{c: collector{lines: map[string]int{}}}
	switch {
	case doc.Kind == 0 || len(doc.Content) == 0:
		// An empty file: every key takes its default; validation then
		// reports what is required (upstream).
	case doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].ShortTag() == "!!null":
	case doc.Content[0].Kind != yaml.MappingNode:
		// Anything else reported would be noise.
		return nil, Errors{{Line: doc.Content[0].Line, Msg: "the file must be a mapping (key: value), got " + kindName(doc.Content[0])}}
	default:
		d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
	}
	cfg.lines = &lineIndex{m: d.c.lines}
	c := &d.c
	cfg.readSecrets(baseDir(path), c)
	cfg.ApplyDefaults()
	cfg.validate(c)
	if len(c.errs) > 0 {
		sortByLine(c.errs)
		return nil, c.errs
	}
	return cfg, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// A FIFO or a device (a *_file pointed at /dev/stdin or /dev/zero) would
	// block the start or fill the memory; secrets and configs are files.
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

func baseDir(path string) string {
	dir := "."
	if path != "" {
		dir = filepath.Dir(path)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

var yamlLine = regexp.MustCompile(`line (\d+): `)

// syntaxError turns yaml.v3's "yaml: line 5: did not find expected key"
// into a FieldError on line 5.
func syntaxError(err error) FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatchIndex(msg); m != nil {
		line, _ = strconv.Atoi(msg[m[2]:m[3]])
		msg = msg[:m[0]] + msg[m[1]:]
		// yaml.v3 numbers its parser errors ("did not find expected ...")
		// from the 0-based line where the unclosed construct started; its
		// scanner errors are 1-based already.
		if strings.HasPrefix(msg, "did not find expected") {
			line++
		}
	}
	return FieldError{Line: line, Msg: "invalid YAML: " + msg}
}

// decoder walks the YAML nodes along the Go types, so that every key is
// checked against the schema, every value error names its path and line,
// and one bad value does not hide the next.
type decoder struct {
	c     collector
	nodes int
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("document too large (more than %d values, aliases expanded)", maxNodes)})
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // "key:" with no value, or ~: the key is unset
	}
	switch {
	case v.Type() == reflect.TypeFor[Duration]():
		d.leaf(n, v, path)
	case v.Kind() == reflect.Struct:
		d.mapping(n, v, path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	case v.Kind() == reflect.Map:
		d.stringMap(n, v, path)
	case v.Kind() == reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if d.leaf(n, p.Elem(), path) {
			v.Set(p)
		}
	default:
		d.leaf(n, v, path)
	}
}

// fields maps the YAML keys of a struct type to field indexes.
func fields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

// mapEntries lists a mapping's key/value pairs with YAML merge keys
// (<<: *defaults) resolved: keys written in the mapping win over merged ones.
func mapEntries(n *yaml.Node) [][2]*yaml.Node {
	var own, merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Style == 0 {
			for _, m := range mergeSources(val) {
				merged = append(merged, mapEntries(m)...)
			}
			continue
		}
		own = append(own, [2]*yaml.Node{k, val})
	}
	if len(merged) == 0 {
		return own
	}
	seen := map[string]bool{}
	for _, e := range own {
		seen[e[0].Value] = true
	}
	out := own
	for _, e := range merged {
		if !seen[e[0].Value] {
			seen[e[0].Value] = true
			out = append(out, e)
		}
	}
	return out
}

func mergeSources(n *yaml.Node) []*yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{n}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, c := range n.Content {
			if c.Kind == yaml.AliasNode && c.Alias != nil {
				c = c.Alias
			}
			if c.Kind == yaml.MappingNode {
				out = append(out, c)
			}
		}
		return out
	}
	return nil
}

// mappingEntries checks that n is a mapping and lists its entries (merge
// keys resolved) with the checks every mapping shares: keys are plain
// strings and set once. ok is false when n is not a mapping.
func (d *decoder) mappingEntries(n *yaml.Node, path string) (out []entry, ok bool) {
	if n.Kind != yaml.MappingNode {
		d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: "want a mapping (key: value), got " + kindName(n)})
		return nil, false
	}
	firstLine := map[string]int{}
	for _, e := range mapEntries(n) {
		k := e[0]
		if k.Kind != yaml.ScalarNode {
			d.c.errs = append(d.c.errs, FieldError{Path: path, Line: k.Line, Msg: "keys must be plain strings"})
			continue
		}
		p := join(path, k.Value)
		if l, dup := firstLine[k.Value]; dup {
			d.c.errs = append(d.c.errs, FieldError{Path: p, Line: k.Line, Msg: fmt.Sprintf("duplicate key (first set on line %d)", l)})
			continue
		}
		firstLine[k.Value] = k.Line
		out = append(out, entry{key: k, val: e[1], path: p})
	}
	return out, true
}

// entry is one checked mapping entry; path is the key's full path.
type entry struct {
	key, val *yaml.Node
	path     string
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	es, ok := d.mappingEntries(n, path)
	if !ok {
		return
	}
	known := fields(v.Type())
	for _, e := range es {
		k, p := e.key, e.path
		i, ok := known[k.Value]
		if !ok && strings.HasPrefix(k.Value, "x-") {
			// Extension keys, as in Compose files: a place for YAML
			// anchors (x-common: &common ...) that no typo can hit.
			continue
		}
		if !ok {
			msg := "unknown key"
			if s := suggest(k.Value, known); s != "" {
				msg += ", did you mean " + s + "?"
			}
			d.c.errs = append(d.c.errs, FieldError{Path: p, Line: k.Line, Msg: msg})
			continue
		}
		d.c.lines[p] = k.Line
		d.decode(e.val, v.Field(i), p)
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: "want a list, got " + kindName(n)})
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.c.lines[p] = item.Line
		d.decode(item, s.Index(i), p)
	}
	v.Set(s)
}

// stringMap decodes role_mapping (map[string][]string).
func (d *decoder) stringMap(n *yaml.Node, v reflect.Value, path string) {
	es, ok := d.mappingEntries(n, path)
	if !ok {
		return
	}
	m := reflect.MakeMap(v.Type())
	for _, e := range es {
		d.c.lines[e.path] = e.key.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(e.val, elem, e.path)
		m.SetMapIndex(reflect.ValueOf(e.key.Value).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}

// leaf decodes a scalar after ${VAR} expansion; it reports whether v was set.
func (d *decoder) leaf(n *yaml.Node, v reflect.Value, path string) bool {
	if n.Kind != yaml.ScalarNode {
		d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: "want a single value, got " + kindName(n)})
		return false
	}
	val, err := expandEnv(n.Value)
	if err != nil {
		d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: err.Error()})
		return false
	}
	if v.Kind() == reflect.String {
		// Strings take the text as is: an expanded password "null" or "~"
		// is that password, not an unset key.
		v.SetString(val)
		return true
	}
	e := *n // expand on a copy: an aliased node is visited more than once
	e.Value = val
	if val != n.Value && n.Style == 0 {
		e.Tag = "" // re-resolve: page_size: ${PAGE_SIZE} is an int once expanded
	}
	tag := e.ShortTag()
	if tag == "!!null" {
		return false
	}
	if u, isU := v.Addr().Interface().(yaml.Unmarshaler); isU {
		// Types with their own UnmarshalYAML (Duration).
		if err := u.UnmarshalYAML(&e); err != nil {
			d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: err.Error()})
			return false
		}
		return true
	}
	var ok bool
	switch v.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		// yaml.v3 would truncate 1.5 into 1; only integers are integers.
		ok = tag == "!!int" && e.Decode(v.Addr().Interface()) == nil
		if !ok {
			d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("want an integer, got %q", val)})
		}
	case reflect.Float64:
		ok = (tag == "!!int" || tag == "!!float") && e.Decode(v.Addr().Interface()) == nil
		if !ok {
			d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("want a number, got %q", val)})
		}
	case reflect.Bool:
		ok = e.Decode(v.Addr().Interface()) == nil
		if !ok {
			d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("want true or false, got %q", val)})
		}
	default:
		d.c.errs = append(d.c.errs, FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("unsupported field type %s", v.Type())})
	}
	return ok
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

// suggest returns the known key closest to a misspelt one, if close enough.
func suggest(key string, known map[string]int) string {
	best, bestD := "", 3
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names) // deterministic on ties
	for _, k := range names {
		if dist := levenshtein(strings.ToLower(key), k); dist < bestD {
			best, bestD = k, dist
		}
	}
	return best
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expandEnv replaces ${VAR} and ${VAR:-default}, and $$ with $.
func expandEnv(s string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ (write $$ for a literal $)")
			}
			expr := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			if !envName.MatchString(name) {
				return "", fmt.Errorf("invalid variable name %q in ${%s} (write $$ for a literal $)", name, expr)
			}
			v, set := os.LookupEnv(name)
			switch {
			case set && v != "":
				b.WriteString(v)
			case hasDef:
				b.WriteString(def)
			case set:
				// Set but empty: used as is; an empty required value is
				// then reported by validation under its own key.
			default:
				return "", fmt.Errorf("environment variable %s is not set (write ${%s:-default} for a fallback)", name, name)
			}
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// readSecrets reads bind_password_file and admin_token_file. Relative paths
// are taken from the config file's directory and stored resolved, so the
// file works whatever the working directory of ldapgate.
func (c *Config) readSecrets(base string, col *collector) {
	if c.AdminTokenFile != "" {
		c.AdminTokenFile = resolvePath(base, c.AdminTokenFile)
		if v, err := readSecretFile(c.AdminTokenFile); err != nil {
			col.add("admin_token_file", "%s", err)
		} else {
			c.AdminToken = v
		}
	}
	if c.Store.Postgres.DSNFile != "" {
		c.Store.Postgres.DSNFile = resolvePath(base, c.Store.Postgres.DSNFile)
		if v, err := readSecretFile(c.Store.Postgres.DSNFile); err != nil {
			col.add("store.postgres.dsn_file", "%s", err)
		} else {
			c.Store.Postgres.DSN = v
		}
	}
	for i := range c.Directories {
		d := &c.Directories[i]
		p := fmt.Sprintf("directories[%d]", i)
		if d.TLS.CAFile != "" {
			d.TLS.CAFile = resolvePath(base, d.TLS.CAFile)
		}
		if d.BindPasswordFile == "" {
			continue
		}
		d.BindPasswordFile = resolvePath(base, d.BindPasswordFile)
		if d.BindPassword.IsSet() {
			col.add(p+".bind_password", "set both bind_password and bind_password_file; keep one")
			continue
		}
		if v, err := readSecretFile(d.BindPasswordFile); err != nil {
			col.add(p+".bind_password_file", "%s", err)
		} else {
			d.BindPassword = v
		}
	}
}

func resolvePath(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

func readSecretFile(path string) (Secret, error) {
	data, err := readLimited(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("cannot read %s: %v", path, pe.Err)
		}
		return "", fmt.Errorf("cannot read: %v", err)
	}
	s := string(data)
	// Only one newline: it is what editors and `echo` add; anything else
	// (spaces, a second line) may be part of the secret.
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return Secret(s), nil
}

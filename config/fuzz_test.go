package config

import (
	"errors"
	"testing"
)

// FuzzParse: whatever the bytes, Parse returns either a valid config or
// Errors, never panics, and never both. Seeds: testdata/fuzz/FuzzParse
// (the example file and broken variants). Run:
//
//	go test -run x -fuzz FuzzParse -fuzztime 20s ./config
func FuzzParse(f *testing.F) {
	f.Add([]byte("upstream: http://a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "testdata/fuzz.yaml")
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", cfg != nil, err)
		}
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v is not a non-empty Errors", err, err)
			}
			for _, e := range errs {
				if e.Msg == "" || e.Line < 0 {
					t.Fatalf("malformed FieldError %#v", e)
				}
			}
			return
		}
		// A config Load accepts is stable: defaults again change nothing
		// that validation would refuse.
		cfg.ApplyDefaults()
		if errs := cfg.Validate(); len(errs) != 0 {
			t.Fatalf("accepted config fails Validate: %v", errs)
		}
		_ = cfg.Warnings()
		_ = cfg.LogValue().Resolve().String()
	})
}

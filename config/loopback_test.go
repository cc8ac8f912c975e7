package config

import "testing"

// TestIsLoopbackURL: only a loopback address or localhost is spared the
// clear-text ldap:// warning; a host name that merely starts with "127."
// can resolve anywhere.
func TestIsLoopbackURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"ldap://127.0.0.1:389", true},
		{"ldap://127.5.6.7", true},
		{"ldap://localhost:389/", true},
		{"ldap://[::1]:389", true},
		{"ldap://[::1]", true},
		{"ldap://127.evil.example:389", false},
		{"ldap://ldap.example.com:389", false},
		{"ldap://10.0.0.1", false},
		{"ldap://[::2]:389", false},
	} {
		if got := isLoopbackURL(tc.url); got != tc.want {
			t.Errorf("isLoopbackURL(%q) = %v, want %v", tc.url, got, tc.want)
		}
	}
}

package config

import (
	"log/slog"
	"slices"
	"strconv"
)

// LogValue lists the settings an operator checks at start. Secrets appear
// only as "set or not": the Secret fields are left out, not masked, so a
// future field added here cannot leak by mistake through a raw string.
func (c Config) LogValue() slog.Value {
	// A group keyed by name: handlers render a slice of slog.Values as
	// opaque objects, but nested groups come out whole.
	dirs := make([]slog.Attr, len(c.Directories))
	for i := range c.Directories {
		key := c.Directories[i].Name
		if key == "" {
			key = strconv.Itoa(i)
		}
		dirs[i] = slog.Attr{Key: key, Value: c.Directories[i].LogValue()}
	}
	return slog.GroupValue(
		slog.String("path", c.Path),
		slog.String("listen", c.Listen),
		slog.String("metrics_listen", c.MetricsListen),
		slog.Group("server",
			slog.String("read_header_timeout", c.Server.ReadHeaderTimeout.String()),
			slog.String("idle_timeout", c.Server.IdleTimeout.String()),
			slog.Int("max_conns", c.Server.MaxConns),
			slog.Int("max_conns_per_ip", c.Server.MaxConnsPerIP)),
		slog.Bool("pprof", c.Pprof),
		slog.String("upstream", c.Upstream),
		slog.String("data_dir", c.DataDir),
		slog.String("store", c.Store.Backend),
		slog.String("replica_name", c.ReplicaName),
		slog.String("log_level", c.LogLevel),
		slog.Bool("admin_token_set", c.AdminToken.IsSet()),
		slog.Any("roles", c.Roles),
		slog.String("session_ttl", c.Session.TTL.String()),
		slog.String("session_idle_timeout", c.Session.IdleTimeout.String()),
		slog.Bool("secure_cookie", c.SecureCookie()),
		slog.Any("trusted_proxies", c.TrustedProxies),
		slog.Any("public_paths", c.PublicPaths),
		slog.Int("local_users", len(c.LocalUsers)),
		slog.Attr{Key: "directories", Value: slog.GroupValue(dirs...)},
	)
}

// LogValue describes the directory without its bind password.
func (d Directory) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("name", d.Name),
		slog.String("type", d.Type),
		slog.Any("urls", d.URLs),
		slog.Bool("start_tls", d.StartTLS),
		slog.Bool("insecure_skip_verify", d.TLS.InsecureSkipVerify),
		slog.String("base_dn", d.BaseDN),
		slog.String("bind_dn", d.BindDN),
		slog.Bool("bind_password_set", d.BindPassword.IsSet()),
		slog.String("domain", d.DomainName()),
		slog.String("naming", d.Naming),
		slog.String("schedule", d.Schedule),
		slog.Bool("auto_sync", d.AutoSyncEnabled()),
		slog.String("managed", d.Managed),
	}
	if d.ID != 0 {
		attrs = append([]slog.Attr{slog.Uint64("id", d.ID)}, attrs...)
	}
	return slog.GroupValue(attrs...)
}

// Clone returns a deep copy: editing the copy's slices, maps and pointers
// (an API PATCH) never changes the original, which concurrent readers use.
func (d Directory) Clone() Directory {
	d.URLs = slices.Clone(d.URLs)
	if d.RoleMapping != nil {
		m := make(map[string][]string, len(d.RoleMapping))
		for k, v := range d.RoleMapping {
			m[k] = slices.Clone(v)
		}
		d.RoleMapping = m
	}
	if d.AutoSync != nil {
		v := *d.AutoSync
		d.AutoSync = &v
	}
	if d.MaxBlockFraction != nil {
		v := *d.MaxBlockFraction
		d.MaxBlockFraction = &v
	}
	if d.Live != nil {
		v := *d.Live
		d.Live = &v
	}
	return d
}

// Redacted returns a deep copy without the bind password (for answers and
// dumps that must not carry it even by accident of a custom encoder).
func (d Directory) Redacted() Directory {
	c := d.Clone()
	c.BindPassword = ""
	return c
}

// Redacted returns a deep copy of the config with every secret emptied.
func (c *Config) Redacted() *Config {
	r := *c
	r.AdminToken = ""
	r.Roles = slices.Clone(c.Roles)
	r.PublicPaths = slices.Clone(c.PublicPaths)
	r.TrustedProxies = slices.Clone(c.TrustedProxies)
	if c.Session.SecureCookie != nil {
		v := *c.Session.SecureCookie
		r.Session.SecureCookie = &v
	}
	r.LocalUsers = slices.Clone(c.LocalUsers)
	for i := range r.LocalUsers {
		r.LocalUsers[i].PasswordHash = ""
	}
	r.Directories = make([]Directory, len(c.Directories))
	for i := range c.Directories {
		r.Directories[i] = c.Directories[i].Redacted()
	}
	return &r
}

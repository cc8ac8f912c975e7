package config

// DomainName is a placeholder until the config loader lands: the login
// domain of the directory (SPEC §3).
func (d *Directory) DomainName() string { return d.Domain }

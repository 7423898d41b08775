package daemon

import (
	"log/slog"

	"github.com/secnic/secnic/internal/keyfile"
)

// checkKeyFile refuses a configuration file with keys that group or others
// may read, unless insecure_key_file_permissions accepts it (then it is a
// warning), and collects the warnings for all-zero keys.
func (c *Config) checkKeyFile(path string) error {
	c.warnings = keyfile.ZeroKeys(c.SAs)
	if !keyfile.HasKeys(c.SAs) {
		return nil
	}
	err := keyfile.Check(path, "set insecure_key_file_permissions: true in it")
	if err == nil {
		return nil
	}
	if _, insecure := err.(*keyfile.InsecureError); insecure && c.InsecureKeyFilePermissions {
		c.warnings = append(c.warnings, err.Error()+" (accepted: insecure_key_file_permissions is set)")
		return nil
	}
	return &ConfigError{Source: path, Problems: []string{err.Error()}}
}

// Warnings are what loading the configuration file found worth saying but
// accepted: all-zero keys, and key file permissions that
// insecure_key_file_permissions accepts. The daemon logs them; `secnic
// run --check` prints them.
func (c *Config) Warnings() []string { return c.warnings }

func logWarnings(log *slog.Logger, path string, c *Config) {
	for _, w := range c.warnings {
		log.Warn("configuration accepted with a warning", "file", path, "warning", w)
	}
}

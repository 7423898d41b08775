package main

import (
	"errors"
	"fmt"

	"github.com/secnic/secnic/internal/keyfile"
	"github.com/secnic/secnic/saspec"
)

// allowInsecureFlag is the flag that downgrades the refusal of a key file
// others may read to a warning.
const allowInsecureFlag = "allow-insecure-key-file"

// checkKeyFile refuses a file holding keys that group or others may read,
// as ssh does; with allow, it warns instead.
func (a *app) checkKeyFile(path string, allow bool) error {
	err := keyfile.Check(path, "pass --"+allowInsecureFlag)
	var ie *keyfile.InsecureError
	if errors.As(err, &ie) && allow {
		fmt.Fprintf(a.errOut, "warning: %v (accepted: --%s)\n", err, allowInsecureFlag)
		return nil
	}
	if ie != nil {
		return err
	}
	return nil // a file that cannot be read is reported when it is read
}

// warnZeroKeys prints a warning for each all-zero key.
func (a *app) warnZeroKeys(specs []saspec.BundleSpec) {
	for _, w := range keyfile.ZeroKeys(specs) {
		fmt.Fprintf(a.errOut, "warning: %s\n", w)
	}
}

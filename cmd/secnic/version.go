package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3"
// (make build and make install do).
var version string

// versionString is what secnic --version prints: the version and the Go
// version that built it.
func versionString() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return fmt.Sprintf("secnic %s (%s %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

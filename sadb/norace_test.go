//go:build !race

package sadb

const raceEnabled = false

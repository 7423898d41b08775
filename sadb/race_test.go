//go:build race

package sadb

// raceEnabled: the race detector multiplies memory and time; load tests
// scale down under it.
const raceEnabled = true

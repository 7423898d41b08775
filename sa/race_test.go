//go:build race

package sa

// raceEnabled: the race detector multiplies memory and time; load tests
// scale down under it.
const raceEnabled = true

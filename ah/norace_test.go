//go:build !race

package ah

const raceEnabled = false

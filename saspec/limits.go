package saspec

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxErrorsListed is how many per-entry errors the message of a refused
// request of several entries lists before it summarizes the rest; each
// entry's own error is in its result.
const MaxErrorsListed = 10

// quoteBytes is the most of a piece of bad input an error quotes.
const quoteBytes = 32

// quoteInput quotes s for an error message: whole if short, else its
// first quoteBytes bytes (cut at a character boundary) and its length, so
// that no error echoes a long input back.
func quoteInput(s string) string {
	if len(s) <= quoteBytes {
		return strconv.Quote(s)
	}
	cut := quoteBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

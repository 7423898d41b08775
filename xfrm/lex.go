package xfrm

import (
	"fmt"
	"strings"
)

// MaxLineLen bounds one line of input (a batch line or a pasted command).
const MaxLineLen = 64 << 10

// Split cuts a command line into words as a POSIX shell would for the
// simple lines of ip-xfrm scripts: blanks separate words; single quotes
// keep everything literally; double quotes keep blanks and take \" and \\;
// a backslash outside quotes escapes the next character; '#' at the start
// of a word starts a comment. Variables, globs and command substitution are
// not expanded: a '$' or '`' is refused, because the line was meant for a
// shell that would have replaced it.
func Split(line string) ([]string, error) {
	if len(line) > MaxLineLen {
		return nil, fmt.Errorf("the line is %d bytes long; lines are limited to %d bytes", len(line), MaxLineLen)
	}
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
	)
	flush := func() {
		if in {
			words = append(words, cur.String())
			cur.Reset()
			in = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			flush()
		case c == '#' && !in:
			return words, nil
		case c == '\'':
			in = true
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote at column %d: close it with '", i+1)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			in = true
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				switch line[j] {
				case '\\':
					if j+1 < len(line) && (line[j+1] == '"' || line[j+1] == '\\') {
						j++
					}
				case '$', '`':
					return nil, fmt.Errorf("%q at column %d: shell expansion is not supported; write the value itself", line[j], j+1)
				}
				cur.WriteByte(line[j])
			}
			if j >= len(line) {
				return nil, fmt.Errorf("unterminated double quote at column %d: close it with \"", i+1)
			}
			i = j
		case c == '\\':
			if i+1 >= len(line) {
				return nil, fmt.Errorf("a backslash ends the line: join continued lines before splitting")
			}
			in = true
			i++
			if line[i] != '\n' {
				cur.WriteByte(line[i])
			}
		case c == '$' || c == '`':
			return nil, fmt.Errorf("%q at column %d: shell expansion is not supported; write the value itself", c, i+1)
		default:
			in = true
			cur.WriteByte(c)
		}
	}
	flush()
	return words, nil
}

// Lines cuts a script into logical lines: a backslash before the newline
// continues the line, as in the shell.
func Lines(text string) []string {
	var out []string
	var cur strings.Builder
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSuffix(l, "\r")
		if strings.HasSuffix(l, "\\") && !strings.HasSuffix(l, "\\\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\"))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(l)
		out = append(out, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// args walks the words of a command.
type args struct {
	w []string
	i int
}

func (a *args) more() bool   { return a.i < len(a.w) }
func (a *args) peek() string { return a.w[a.i] }
func (a *args) next() string { s := a.w[a.i]; a.i++; return s }

// value returns the word after keyword kw, or an error naming what is
// missing.
func (a *args) value(kw, what string) (string, error) {
	if !a.more() {
		return "", fmt.Errorf("%q needs %s after it", kw, what)
	}
	return a.next(), nil
}

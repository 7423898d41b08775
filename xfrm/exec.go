package xfrm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// Backend is the SA and policy table commands act on: the daemon's control
// API for the CLI, an sa.Table in tests.
type Backend interface {
	AddBundle(ctx context.Context, spec saspec.BundleSpec) error
	ListBundles(ctx context.Context, keys bool) ([]sadb.BundleInfo, error)
	DeleteBundle(ctx context.Context, h sa.Handle) error
	AddPolicy(ctx context.Context, spec saspec.PolicySpec) error
	ListPolicies(ctx context.Context) ([]sadb.PolicyInfo, error)
	DeletePolicy(ctx context.Context, id uint32) error
}

// Runner executes ip-xfrm commands against a Backend.
type Runner struct {
	Backend Backend
	// Parse holds what states need beyond their words.
	Parse Options
	// Print formats what list and get print.
	Print PrintOptions
	// Out receives the output.
	Out io.Writer
}

// Objects and verbs, with the abbreviations ip accepts.
func matches(word string, full ...string) bool {
	for _, f := range full {
		if word != "" && strings.HasPrefix(f, word) {
			return true
		}
	}
	return false
}

// Object returns "state", "policy" or "monitor" for an XFRM-OBJECT word
// ("state", "sa", "policy", "monitor" or a prefix of them).
func Object(word string) (string, error) {
	switch {
	case word == "sa" || matches(word, "state"):
		return "state", nil
	case matches(word, "policy"):
		return "policy", nil
	case matches(word, "monitor"):
		return "monitor", nil
	}
	return "", fmt.Errorf("%q is not an XFRM object: give state, policy or monitor", word)
}

// Verb returns the canonical command of a verb word for state or policy.
func Verb(object, word string) (string, error) {
	switch word {
	case "", "list", "ls", "lst", "show", "l", "sh":
		return "list", nil
	case "add", "a":
		return "add", nil
	case "update", "upd", "u":
		return "update", nil
	case "delete", "del", "d":
		return "delete", nil
	case "deleteall", "delall":
		return "deleteall", nil
	case "get", "g":
		return "get", nil
	case "flush", "f":
		return "flush", nil
	case "count":
		return "count", nil
	case "allocspi":
		return "", unsupported("allocspi", "secnic does not allocate SPIs: choose the SPI and give it to state add")
	case "set", "setdefault", "getdefault":
		if object == "policy" {
			return "", unsupported("policy "+word, "secnic's default policies are set in the daemon configuration (default_policy)")
		}
	}
	return "", fmt.Errorf("%q is not a command of ip xfrm %s: give add, update, delete, get, list, deleteall, flush or count", word, object)
}

// RunLine runs one line of an ip-xfrm script: "[ip [-s]] [xfrm] OBJECT
// COMMAND ...". Empty lines and comments do nothing.
func (r *Runner) RunLine(ctx context.Context, line string) error {
	words, err := Split(line)
	if err != nil {
		return err
	}
	if len(words) > 0 && words[0] == "ip" {
		words = words[1:]
		for len(words) > 0 && strings.HasPrefix(words[0], "-") {
			switch words[0] {
			case "-s", "-stats", "-statistics":
				p := *r
				p.Print.Stats = true
				r = &p
			default:
				return fmt.Errorf("ip option %q is not supported in secnic xfrm scripts (only -s)", words[0])
			}
			words = words[1:]
		}
	}
	if len(words) > 0 && (words[0] == "xfrm" || words[0] == "x") {
		words = words[1:]
	}
	if len(words) == 0 {
		return nil
	}
	obj, err := Object(words[0])
	if err != nil {
		return err
	}
	if obj == "monitor" {
		return fmt.Errorf("monitor cannot run inside a script: run secnic xfrm monitor")
	}
	verb := ""
	if len(words) > 1 {
		verb = words[1]
	}
	v, err := Verb(obj, verb)
	if err != nil {
		return err
	}
	rest := []string{}
	if len(words) > 2 {
		rest = words[2:]
	}
	return r.Run(ctx, obj, v, rest)
}

// RunScript runs the lines of an ip-xfrm script in order (see RunLine).
// Linux lets a policy name states that do not exist yet; secnic links
// policies to existing bundles, so a policy add whose templates match no
// state waits and is retried after each later state add. It returns the
// first error, naming its line.
func (r *Runner) RunScript(ctx context.Context, text string) error {
	type waiting struct {
		n    int
		line string
	}
	var wait []waiting
	retry := func() error {
		rest := wait[:0]
		for _, w := range wait {
			err := r.RunLine(ctx, w.line)
			switch {
			case errors.Is(err, ErrNoState):
				rest = append(rest, w)
			case err != nil:
				return fmt.Errorf("line %d: %w", w.n, err)
			}
		}
		wait = rest
		return nil
	}
	for i, line := range Lines(text) {
		err := r.RunLine(ctx, line)
		if errors.Is(err, ErrNoState) {
			wait = append(wait, waiting{i + 1, line})
			continue
		}
		if err != nil {
			return fmt.Errorf("line %d: %w", i+1, err)
		}
		if len(wait) > 0 {
			if err := retry(); err != nil {
				return err
			}
		}
	}
	for _, w := range wait {
		if err := r.RunLine(ctx, w.line); err != nil {
			return fmt.Errorf("line %d: %w", w.n, err)
		}
	}
	return nil
}

// Run executes one command (object "state" or "policy", a canonical verb).
func (r *Runner) Run(ctx context.Context, object, verb string, words []string) error {
	if object == "state" {
		return r.state(ctx, verb, words)
	}
	return r.policy(ctx, verb, words)
}

func (r *Runner) states(ctx context.Context, keys bool) ([]StateView, []sadb.PolicyInfo, error) {
	bs, err := r.Backend.ListBundles(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	ps, err := r.Backend.ListPolicies(ctx)
	if err != nil {
		return nil, nil, err
	}
	return States(bs), ps, nil
}

func (r *Runner) state(ctx context.Context, verb string, words []string) error {
	switch verb {
	case "add", "update":
		st, err := ParseState(words, r.Parse)
		if err != nil {
			return err
		}
		defer st.Bundle.Wipe()
		if verb == "update" {
			// With keys: if the new state is refused, the old one comes
			// back.
			vs, _, err := r.states(ctx, true)
			if err != nil {
				return err
			}
			defer func() {
				for _, v := range vs {
					v.Bundle.Spec.Wipe()
				}
			}()
			old := findState(vs, st)
			if old == nil {
				return fmt.Errorf("no state dst %s proto %s spi 0x%08x (%s) to update: use state add", st.Bundle.Dst, stProto(st), uint32(stSPI(st)), st.Bundle.Dir)
			}
			if len(old.Bundle.SAs) > 1 {
				return fmt.Errorf("state spi 0x%08x is part of bundle %d, which holds ESP and AH: update it with secnic sa commands", uint32(stSPI(st)), old.Bundle.Handle)
			}
			if err := r.Backend.DeleteBundle(ctx, old.Bundle.Handle); err != nil {
				return err
			}
			if err := r.Backend.AddBundle(ctx, st.Bundle); err != nil {
				if rerr := r.Backend.AddBundle(ctx, old.Bundle.Spec); rerr != nil {
					return fmt.Errorf("%w (and the old state could not be restored: %v)", err, rerr)
				}
				return fmt.Errorf("%w (the old state is kept)", err)
			}
			return nil
		}
		return r.Backend.AddBundle(ctx, st.Bundle)
	case "get", "delete":
		id, err := ParseID(words)
		if err != nil {
			return err
		}
		vs, ps, err := r.states(ctx, r.Print.Keys && verb == "get")
		if err != nil {
			return err
		}
		var found []StateView
		for _, v := range vs {
			if v.MatchesID(id) {
				found = append(found, v)
			}
		}
		if len(found) == 0 {
			return fmt.Errorf("no state dst %s proto %s spi 0x%08x", id.Dst.Addr(), id.Proto, uint32(id.SPI))
		}
		if verb == "get" {
			for _, v := range found {
				WriteState(r.Out, v, SelectorFor(v, ps), r.Print)
			}
			return nil
		}
		return r.deleteStates(ctx, found)
	case "list", "deleteall":
		f, err := ParseStateFilter(words)
		if err != nil {
			return err
		}
		keys := r.Print.Keys && !f.NoKeys && verb == "list"
		vs, ps, err := r.states(ctx, keys)
		if err != nil {
			return err
		}
		var sel []StateView
		for _, v := range vs {
			if f.Matches(v) {
				sel = append(sel, v)
			}
		}
		if verb == "deleteall" {
			return r.deleteStates(ctx, sel)
		}
		po := r.Print
		po.Keys = keys
		for _, v := range sel {
			WriteState(r.Out, v, SelectorFor(v, ps), po)
		}
		return nil
	case "flush":
		var f StateFilter
		if len(words) > 0 {
			if len(words) != 2 || words[0] != "proto" {
				return fmt.Errorf("state flush takes only proto esp|ah")
			}
			p, err := parseXfrmProto(words[1])
			if err != nil {
				return err
			}
			f.Proto = p
		}
		vs, _, err := r.states(ctx, false)
		if err != nil {
			return err
		}
		var sel []StateView
		for _, v := range vs {
			if f.Matches(v) {
				sel = append(sel, v)
			}
		}
		return r.deleteStates(ctx, sel)
	case "count":
		if len(words) > 0 {
			return fmt.Errorf("state count takes no arguments, not %q", words[0])
		}
		vs, _, err := r.states(ctx, false)
		if err != nil {
			return err
		}
		WriteCount(r.Out, vs)
		return nil
	}
	return fmt.Errorf("state %s is not a command", verb)
}

func stProto(st State) string {
	if st.Bundle.AH != nil {
		return "ah"
	}
	return "esp"
}

func stSPI(st State) saspec.SPI {
	if st.Bundle.AH != nil {
		return st.Bundle.AH.SPI
	}
	return st.Bundle.ESP.SPI
}

// findState returns the installed state with the ID and direction of st.
func findState(vs []StateView, st State) *StateView {
	for i, v := range vs {
		if v.Proto == stProto(st) && v.Spec.SPI == stSPI(st) && v.Bundle.Spec.Dst == st.Bundle.Dst && v.Bundle.Spec.Dir == st.Bundle.Dir {
			return &vs[i]
		}
	}
	return nil
}

// deleteStates deletes the bundles of states. A state that is one SA of an
// AH+ESP bundle is deleted only with its partner.
func (r *Runner) deleteStates(ctx context.Context, vs []StateView) error {
	want := map[sa.Handle]int{}
	for _, v := range vs {
		want[v.Bundle.Handle]++
	}
	done := map[sa.Handle]bool{}
	for _, v := range vs {
		h := v.Bundle.Handle
		if done[h] {
			continue
		}
		done[h] = true
		if want[h] < len(v.Bundle.SAs) {
			return fmt.Errorf("state %s spi 0x%08x is one SA of bundle %d, which holds ESP and AH: delete both (or use secnic sa del %d)", v.Proto, uint32(v.Spec.SPI), h, h)
		}
		if err := r.Backend.DeleteBundle(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) policy(ctx context.Context, verb string, words []string) error {
	switch verb {
	case "add", "update":
		p, err := ParsePolicy(words)
		if err != nil {
			return err
		}
		vs, ps, err := r.states(ctx, false)
		if err != nil {
			return err
		}
		spec := p.Spec()
		if len(p.Tmpls) > 0 && !p.Block {
			if spec.Bundles, err = ResolveTemplates(p, vs); err != nil {
				return err
			}
		}
		var replaced []saspec.PolicySpec
		if verb == "update" {
			id := PolicyID{Dir: p.Dir, Sel: p.Sel}
			for _, old := range ps {
				if id.Matches(old) {
					if err := r.Backend.DeletePolicy(ctx, old.ID); err != nil {
						return err
					}
					replaced = append(replaced, old.Spec)
				}
			}
		}
		if err := r.Backend.AddPolicy(ctx, spec); err != nil {
			for _, old := range replaced {
				if rerr := r.Backend.AddPolicy(ctx, old); rerr != nil {
					return fmt.Errorf("%w (and the old policy could not be restored: %v)", err, rerr)
				}
			}
			return err
		}
		return nil
	case "get", "delete":
		id, err := ParsePolicyID(words)
		if err != nil {
			return err
		}
		vs, ps, err := r.states(ctx, false)
		if err != nil {
			return err
		}
		n := 0
		for _, p := range ps {
			if !id.Matches(p) {
				continue
			}
			n++
			if verb == "get" {
				WritePolicy(r.Out, p, vs, r.Print)
			} else if err := r.Backend.DeletePolicy(ctx, p.ID); err != nil {
				return err
			}
		}
		if n == 0 {
			return fmt.Errorf("no policy dir %s with that selector or index", id.Dir)
		}
		return nil
	case "list", "deleteall", "flush":
		var f PolicyFilter
		if verb == "flush" {
			if len(words) > 0 && !(len(words) == 2 && words[0] == "ptype" && words[1] == "main") {
				return fmt.Errorf("policy flush takes only ptype main")
			}
		} else {
			var err error
			if f, err = ParsePolicyFilter(words); err != nil {
				return err
			}
		}
		vs, ps, err := r.states(ctx, false)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if !f.Matches(p) {
				continue
			}
			if verb == "list" {
				WritePolicy(r.Out, p, vs, r.Print)
			} else if err := r.Backend.DeletePolicy(ctx, p.ID); err != nil {
				return err
			}
		}
		return nil
	case "count":
		if len(words) > 0 {
			return fmt.Errorf("policy count takes no arguments, not %q", words[0])
		}
		ps, err := r.Backend.ListPolicies(ctx)
		if err != nil {
			return err
		}
		WritePolicyCount(r.Out, ps)
		return nil
	}
	return fmt.Errorf("policy %s is not a command", verb)
}

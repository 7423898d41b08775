package control

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/internal/keyfile"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// StatsSource supplies the NIC's statistics for GET /v1/stats. Stats must
// return a value that encodes to JSON; it is called once per request.
type StatsSource interface {
	Stats() any
}

// Backend is what the API controls.
type Backend struct {
	// Table is the SA table (required).
	Table *sadb.Table
	// Caps is the capabilities manager; nil means Table.Caps().
	Caps *capabilities.Manager
	// Stats optionally supplies NIC statistics.
	Stats StatsSource
	// Logger receives request errors; nil means slog.Default().
	Logger *slog.Logger
	// Limits bounds connections to the socket; zero fields take
	// DefaultLimits.
	Limits Limits
}

// Server is the control API server.
type Server struct {
	b         Backend
	log       *slog.Logger
	mux       *http.ServeMux
	offloadMu sync.Mutex

	mu   sync.Mutex
	srv  *http.Server
	stop chan struct{}
	once sync.Once
}

// NewServer returns a server for the backend.
func NewServer(b Backend) (*Server, error) {
	if b.Table == nil {
		return nil, errors.New("control: the backend needs an SA table")
	}
	if b.Caps == nil {
		b.Caps = b.Table.Caps()
	}
	if b.Logger == nil {
		b.Logger = slog.Default()
	}
	b.Limits = b.Limits.withDefaults()
	s := &Server{b: b, log: b.Logger, mux: http.NewServeMux(), stop: make(chan struct{})}
	routes := []struct {
		pattern string
		h       func(http.ResponseWriter, *http.Request) error
	}{
		{"GET /v1/health", s.health},
		{"GET /v1/capabilities", s.capabilities},
		{"POST /v1/offload", s.offload},
		{"GET /v1/sas", s.listSAs},
		{"POST /v1/sas", s.addSAs},
		{"POST /v1/sas/delete", s.deleteSAs},
		{"GET /v1/sas/{ref}", s.showSA},
		{"DELETE /v1/sas/{ref}", s.deleteSA},
		{"POST /v1/sas/{ref}/update", s.updateSA},
		{"GET /v1/policies", s.listPolicies},
		{"POST /v1/policies", s.addPolicies},
		{"GET /v1/policies/{ref}", s.showPolicy},
		{"DELETE /v1/policies/{ref}", s.deletePolicy},
		{"GET /v1/stats", s.stats},
		{"GET /v1/events", s.events},
	}
	for _, r := range routes {
		s.mux.HandleFunc(r.pattern, s.wrap(r.h))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, ErrorResponse{
			Error: fmt.Sprintf("no endpoint %s %s; see docs/api.md", shortPath(r.Method), shortPath(r.URL.Path)), Code: "not_found"})
	})
	return s, nil
}

// Handler returns the HTTP handler, for tests and for serving on other
// listeners.
func (s *Server) Handler() http.Handler { return methodJSON{s.mux} }

// methodJSON turns the mux's plain-text 405 responses into JSON errors.
type methodJSON struct{ h *http.ServeMux }

// ServeHTTP implements http.Handler.
func (m methodJSON) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := m.h.Handler(r); pattern == "" || pattern == "/" {
		// No endpoint matched: either the path is unknown (the "/" handler
		// answers 404) or it is known for other methods (405).
		rr := *r
		for _, meth := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			rr.Method = meth
			if _, p := m.h.Handler(&rr); p != "" && p != "/" {
				writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{
					Error: fmt.Sprintf("%s is not allowed on %s; see docs/api.md", shortPath(r.Method), shortPath(r.URL.Path)), Code: "method_not_allowed"})
				return
			}
		}
	}
	m.h.ServeHTTP(w, r)
}

// Listen creates the unix socket at path: the parent directory is created
// with mode 0700 if missing, and refused if another user owns it or may
// write to it (CheckSocketDir); a stale socket left by a dead daemon is
// removed, and the socket gets mode 0600 (owner only: root for the daemon).
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control: cannot create the socket directory: %w", err)
		}
		// The umask may have left it wider.
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control: cannot restrict the socket directory: %w", err)
		}
	}
	if err := CheckSocketDir(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control: %s exists and is not a socket; remove it or choose another --socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("control: another process is serving %s; stop it or choose another --socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control: cannot remove the stale socket %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: cannot listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control: cannot restrict %s to its owner: %w", path, err)
	}
	return l, nil
}

// Serve serves the API on l until Shutdown; it then returns
// http.ErrServerClosed.
// At most Limits.MaxConns connections are served at once.
func (s *Server) Serve(l net.Listener) error {
	return s.httpServer().Serve(newLimitListener(l, s.b.Limits.MaxConns))
}

// httpServer returns the server's http.Server, creating it on first use,
// so that a Shutdown before Serve makes Serve return at once.
func (s *Server) httpServer() *http.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		lim := s.b.Limits
		s.srv = &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: lim.HeaderTimeout,
			ReadTimeout:       lim.ReadTimeout,
			WriteTimeout:      lim.WriteTimeout,
			IdleTimeout:       lim.IdleTimeout,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		s.srv.RegisterOnShutdown(s.stopStreams)
	}
	return s.srv
}

// ListenAndServe is Listen followed by Serve; the socket file is removed
// when serving stops.
func (s *Server) ListenAndServe(path string) error {
	l, err := Listen(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	return s.Serve(l)
}

// Shutdown stops the server: event streams end, then in-flight requests
// finish (or ctx expires).
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopStreams()
	return s.httpServer().Shutdown(ctx)
}

func (s *Server) stopStreams() { s.once.Do(func() { close(s.stop) }) }

// ---- plumbing --------------------------------------------------------------

type httpError struct {
	status int
	resp   ErrorResponse
}

// Error implements error.
func (e *httpError) Error() string { return e.resp.Error }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf(format, args...), Code: "invalid"}}
}

// StatusOf maps an error code onto the HTTP status the API uses.
func StatusOf(code string) int {
	switch code {
	case "invalid":
		return http.StatusBadRequest
	case "not_found":
		return http.StatusNotFound
	case "conflict", "disabled", "key_reuse":
		return http.StatusConflict
	case "state":
		return http.StatusServiceUnavailable
	case "not_supported":
		return http.StatusUnprocessableEntity
	case "capacity":
		return http.StatusInsufficientStorage
	case "method_not_allowed":
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

func errorResponse(err error) (int, ErrorResponse) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.resp
	}
	code := saspec.ErrorCode(err)
	resp := ErrorResponse{Error: err.Error(), Code: code}
	var se *saspec.Error
	if errors.As(err, &se) {
		resp.Field = se.Field
	}
	return StatusOf(code), resp
}

func (s *Server) wrap(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			status, resp := errorResponse(err)
			if status >= 500 {
				s.log.Error("control API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			} else {
				s.log.Debug("control API request refused", "method", r.Method, "path", r.URL.Path, "code", resp.Code, "err", err)
			}
			writeJSON(w, status, resp)
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, badRequest("the request body is larger than %d bytes; split the request into requests of at most %d entries", MaxBodyBytes, MaxEntries)
		}
		return nil, badRequest("cannot read the request body: %s", clip(err.Error()))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequest("the request body is empty; send a JSON object (see docs/api.md)")
	}
	return boundedJSON(body)
}

func wantKeys(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("keys")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("keys=%s is not a boolean; use keys=true to include key material", Quote(v))
	}
	return b, nil
}

// ---- handlers --------------------------------------------------------------

func (s *Server) health(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, HealthResponse{Status: "ok", Profile: s.b.Caps.Profile()})
	return nil
}

func recordView(r capabilities.Record) RecordView {
	bin, _ := r.MarshalBinary()
	return RecordView{Record: r, NDIS: r.NDISView(), Secnic: r.SecnicView(), Binary: hex.EncodeToString(bin), Algorithms: r.EnabledAlgorithms()}
}

func (s *Server) capabilities(w http.ResponseWriter, _ *http.Request) error {
	hw, cur := s.b.Caps.Snapshot()
	writeJSON(w, http.StatusOK, CapabilitiesResponse{
		Profile:    s.b.Caps.Profile(),
		Setting:    capabilities.SettingFor(cur.Ah, cur.Esp).String(),
		Hardware:   recordView(hw),
		Current:    recordView(cur),
		Linux:      capabilities.LinuxView(hw, cur),
		Deviations: cur.Deviations(),
		Usage:      s.b.Table.Usage(),
		Capacity:   cur.SaOffloadCapacity,
	})
	return nil
}

// ParseSetting reads an IPsecV2 offload parameter as the API and CLI
// accept it: a number, an NDIS name, or a lower-case name with dashes
// ("esp-enabled", "ah-and-esp-enabled", "disabled", "no-change").
func ParseSetting(v string) (capabilities.IPsecV2Setting, error) {
	t := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(v), "-", "_"))
	return capabilities.ParseIPsecV2Setting(t)
}

func (s *Server) offload(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req OffloadRequest
	if err := saspec.DecodeJSONStrict(body, &req); err != nil {
		return err
	}
	changed, err := s.applyOffload(req)
	if err != nil {
		return err
	}
	cur := s.b.Caps.Current()
	writeJSON(w, http.StatusOK, OffloadResponse{Changed: changed, Setting: capabilities.SettingFor(cur.Ah, cur.Esp).String(), Current: cur, NDIS: cur.NDISView()})
	return nil
}

// applyOffload applies the request to a scratch manager first, so that it
// takes effect all together (one indication) or not at all.
func (s *Server) applyOffload(req OffloadRequest) (bool, error) {
	var p capabilities.OffloadParameters
	for _, f := range []struct {
		name string
		v    saspec.Ref
		dst  *capabilities.IPsecV2Setting
	}{{"ipsec_v2", req.IPsecV2, &p.IPsecV2}, {"ipsec_v2_ipv4", req.IPsecV2IPv4, &p.IPsecV2IPv4}} {
		if f.v == "" {
			continue
		}
		v, err := ParseSetting(string(f.v))
		if err != nil {
			return false, &saspec.Error{Kind: saspec.ErrInvalid, Field: f.name, Msg: strings.TrimPrefix(err.Error(), "capabilities: "), Err: err}
		}
		*f.dst = v
	}
	if req.IPsecV2 == "" && req.IPsecV2IPv4 == "" && len(req.Toggles) == 0 {
		return false, badRequest("the request changes nothing: give ipsec_v2, ipsec_v2_ipv4 or toggles")
	}
	s.offloadMu.Lock()
	defer s.offloadMu.Unlock()
	hw, cur := s.b.Caps.Snapshot()
	scratch, err := capabilities.NewManager(hw, cur)
	if err != nil {
		return false, fmt.Errorf("control: copying the capability records: %w", err)
	}
	if _, err := scratch.SetOffloadParameters(p); err != nil {
		return false, toSAError("ipsec_v2", err)
	}
	for i, t := range req.Toggles {
		field := fmt.Sprintf("toggles[%d]", i)
		n := 0
		var err error
		if t.Feature != "" {
			n++
			_, err = scratch.SetFeature(t.Feature, t.On)
		}
		if t.Encryption != "" {
			n++
			_, err = scratch.SetEncryption(t.Encryption, t.On)
		}
		if t.Integrity != "" {
			n++
			_, err = scratch.SetIntegrity(t.Integrity, t.On)
		}
		if t.Ethtool != "" {
			n++
			_, err = scratch.SetLinuxFeature(t.Ethtool, t.On)
		}
		if n != 1 {
			return false, &saspec.Error{Kind: saspec.ErrInvalid, Field: field, Msg: "give exactly one of feature, encryption, integrity or ethtool"}
		}
		if err != nil {
			return false, toSAError(field, err)
		}
	}
	next := scratch.Current()
	if next == cur {
		return false, nil
	}
	changed, err := s.b.Caps.SetCurrent(next)
	if err != nil {
		return false, toSAError("", err)
	}
	return changed, nil
}

func toSAError(field string, err error) error {
	kind := saspec.ErrInvalid
	for _, k := range []error{capabilities.ErrNotSupported, capabilities.ErrDisabled, capabilities.ErrCapacity} {
		if errors.Is(err, k) {
			kind = k
		}
	}
	return &saspec.Error{Kind: kind, Field: field, Msg: strings.TrimPrefix(err.Error(), "capabilities: "), Err: err}
}

func (s *Server) listSAs(w http.ResponseWriter, r *http.Request) error {
	keys, err := wantKeys(r)
	if err != nil {
		return err
	}
	after, limit, err := pageQuery(r)
	if err != nil {
		return err
	}
	page, more := s.b.Table.ListPage(after, limit, keys)
	out := ListSAsResponse{Bundles: page, Usage: s.b.Table.Usage(), Capacity: s.b.Caps.Current().SaOffloadCapacity}
	if more {
		out.Next = page[len(page)-1].Handle
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// pageQuery reads after= and limit= of a paged listing.
func pageQuery(r *http.Request) (after sa.Handle, limit int, err error) {
	q := r.URL.Query()
	limit = DefaultPageLimit
	if v := q.Get("after"); v != "" {
		h, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, badRequest("after=%s is not a handle; give the next value of the previous page", Quote(v))
		}
		after = sa.Handle(h)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageLimit {
			return 0, 0, badRequest("limit=%s is not a page size; give 1 to %d bundles", Quote(v), MaxPageLimit)
		}
		limit = n
	}
	return after, limit, nil
}

func (s *Server) addSAs(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	specs, err := saspec.DecodeBundleSpecs(body)
	if err != nil {
		return err
	}
	defer func() {
		for i := range specs {
			specs[i].Wipe()
		}
	}()
	for _, w := range keyfile.ZeroKeys(specs) {
		s.log.Warn("SA add request with an all-zero key", "warning", w)
	}
	res, err := s.b.Table.AddBundles(specs)
	if err != nil {
		writeRefusal(w, err, len(specs), res)
		return nil
	}
	out := AddSAsResponse{Results: res}
	for _, x := range res {
		if x.Handle != 0 {
			out.Offloaded++
		} else {
			out.Failed++
		}
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// writeRefusal answers an add request of n entries that added none: the
// error and, when there were several entries, each entry's result.
func writeRefusal(w http.ResponseWriter, err error, n int, results any) {
	status, resp := errorResponse(err)
	if n > 1 {
		resp.Results, _ = json.Marshal(results)
	}
	writeJSON(w, status, resp)
}

func (s *Server) showSA(w http.ResponseWriter, r *http.Request) error {
	keys, err := wantKeys(r)
	if err != nil {
		return err
	}
	ref, err := pathRef(r)
	if err != nil {
		return err
	}
	info, err := s.b.Table.Get(ref, keys)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) deleteRefs(refs []string) DeleteSAsResponse {
	out := DeleteSAsResponse{Results: make([]DeleteResult, len(refs))}
	var hs []sa.Handle
	var idx []int
	for i, ref := range refs {
		out.Results[i].Ref = ref
		h, err := s.b.Table.Resolve(ref)
		if err != nil {
			out.Results[i].Error, out.Results[i].Code = err.Error(), saspec.ErrorCode(err)
			continue
		}
		hs = append(hs, h)
		idx = append(idx, i)
	}
	if len(hs) > 0 {
		for j, err := range s.b.Table.DeleteBundles(hs) {
			res := &out.Results[idx[j]]
			if err != nil {
				res.Error, res.Code = err.Error(), saspec.ErrorCode(err)
				continue
			}
			res.Handle = hs[j]
			out.Deleted++
		}
	}
	return out
}

func (s *Server) deleteSA(w http.ResponseWriter, r *http.Request) error {
	ref, err := pathRef(r)
	if err != nil {
		return err
	}
	out := s.deleteRefs([]string{ref})
	if out.Deleted == 0 {
		res := out.Results[0]
		return &httpError{StatusOf(res.Code), ErrorResponse{Error: res.Error, Code: res.Code}}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteSAs(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req DeleteSAsRequest
	if err := saspec.DecodeJSONStrict(body, &req); err != nil {
		return err
	}
	if len(req.Refs) == 0 {
		return badRequest("refs is empty: give the handles or names of the bundles to delete")
	}
	refs := make([]string, len(req.Refs))
	for i, r := range req.Refs {
		refs[i] = string(r)
	}
	out := s.deleteRefs(refs)
	if out.Deleted == 0 {
		res, _ := json.Marshal(out.Results)
		code := out.Results[0].Code
		return &httpError{StatusOf(code), ErrorResponse{Error: "no bundle was deleted: " + clip(out.Results[0].Error), Code: code, Results: res}}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) updateSA(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var u saspec.UpdateSpec
	if err := saspec.DecodeJSONStrict(body, &u); err != nil {
		return err
	}
	ref, err := pathRef(r)
	if err != nil {
		return err
	}
	h, err := s.b.Table.Resolve(ref)
	if err != nil {
		return err
	}
	if err := s.b.Table.Update(h, u); err != nil {
		return err
	}
	info, err := s.b.Table.Get(strconv.FormatUint(uint64(h), 10), false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) listPolicies(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, ListPoliciesResponse{Policies: s.b.Table.Policies()})
	return nil
}

func (s *Server) addPolicies(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	specs, err := saspec.DecodePolicySpecs(body)
	if err != nil {
		return err
	}
	res, err := s.b.Table.AddPolicies(specs)
	if err != nil {
		writeRefusal(w, err, len(specs), res)
		return nil
	}
	out := AddPoliciesResponse{Results: res}
	for _, x := range res {
		if x.ID != 0 {
			out.Added++
		} else {
			out.Failed++
		}
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) showPolicy(w http.ResponseWriter, r *http.Request) error {
	ref, err := pathRef(r)
	if err != nil {
		return err
	}
	p, err := s.b.Table.Policy(ref)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	ref, err := pathRef(r)
	if err != nil {
		return err
	}
	id, err := s.b.Table.ResolvePolicy(ref)
	if err != nil {
		return err
	}
	if err := s.b.Table.DeletePolicy(strconv.FormatUint(uint64(id), 10)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, DeletePolicyResponse{ID: id})
	return nil
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageQuery(r)
	if err != nil {
		return err
	}
	st, more := s.b.Table.StatsPage(after, limit)
	out := StatsResponse{Table: st}
	if more {
		out.Next = st.SAs[len(st.SAs)-1].Handle
	}
	if s.b.Stats != nil {
		nic, err := json.Marshal(s.b.Stats.Stats())
		if err != nil {
			return fmt.Errorf("control: encoding NIC statistics: %w", err)
		}
		out.NIC = nic
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// events streams the event stream as newline-delimited JSON (one sa.Event
// per line, flushed as it happens). The first event is "subscribed"; a
// "dropped" event reports events lost because the client read too slowly.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	size := sadb.DefaultEventBuffer
	if v := r.URL.Query().Get("buffer"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1<<16 {
			return badRequest("buffer=%s must be a number of events from 1 to 65536", Quote(v))
		}
		size = n
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		return errors.New("control: the connection cannot stream")
	}
	// The stream outlives the request timeouts: no read deadline (the
	// request has been read), and a write deadline per event, so that a
	// follower that stops reading is disconnected.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	wd := s.b.Limits.WriteTimeout
	_ = rc.SetWriteDeadline(time.Now().Add(wd))
	sub := s.b.Table.Subscribe(size)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	if err := enc.Encode(sadb.Event{Type: sadb.EventSubscribed, Time: time.Now()}); err != nil {
		return nil
	}
	fl.Flush()
	var dropped uint64
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-s.stop:
			return nil
		case e, ok := <-sub.C:
			if !ok {
				return nil
			}
			_ = rc.SetWriteDeadline(time.Now().Add(wd))
			if d := sub.Dropped(); d > dropped {
				if err := enc.Encode(sadb.Event{Type: sadb.EventDropped, Time: time.Now(), Dropped: d - dropped}); err != nil {
					return nil
				}
				dropped = d
			}
			if err := enc.Encode(e); err != nil {
				return nil
			}
			fl.Flush()
		}
	}
}

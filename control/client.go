package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// APIError is an error answered by the API.
type APIError struct {
	// Status is the HTTP status.
	Status int
	ErrorResponse
}

// Error returns the API's message.
func (e *APIError) Error() string {
	msg := e.ErrorResponse.Error
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return msg
}

// Client talks to the control API.
type Client struct {
	hc     *http.Client
	base   string
	socket string
}

// NewClient returns a client for the daemon listening on the unix socket
// at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if err := checkSocketOwner(path); err != nil {
				return nil, &ownerError{err}
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, err
			}
			if err := checkPeer(c, path); err != nil {
				c.Close()
				return nil, &ownerError{err}
			}
			return c, nil
		},
		DisableCompression: true,
	}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://secnic", socket: path}
}

// NewHTTPClient returns a client for an API served at base (e.g. an
// httptest server) through hc.
func NewHTTPClient(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{hc: hc, base: strings.TrimSuffix(base, "/")}
}

// ownerError is a refusal to talk to a socket someone else owns.
type ownerError struct{ err error }

func (e *ownerError) Error() string { return e.err.Error() }

func (c *Client) connError(err error) error {
	var oe *ownerError
	if errors.As(err, &oe) {
		return oe.err
	}
	if c.socket != "" {
		return fmt.Errorf("cannot reach the secnic daemon at %s: %v (is the daemon running? use --socket to point at its socket)", c.socket, err)
	}
	return fmt.Errorf("cannot reach the secnic API at %s: %v", c.base, err)
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	return c.doRaw(ctx, method, path, body, out)
}

func (c *Client) doRaw(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return c.connError(err)
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.ErrorResponse) != nil || e.ErrorResponse.Error == "" {
			e.ErrorResponse.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("cannot decode the answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Health checks that the daemon answers.
func (c *Client) Health(ctx context.Context) (HealthResponse, error) {
	var out HealthResponse
	err := c.do(ctx, http.MethodGet, APIVersion+"/health", nil, &out)
	return out, err
}

// Capabilities returns the hardware capabilities and the current
// configuration in all views.
func (c *Client) Capabilities(ctx context.Context) (CapabilitiesResponse, error) {
	var out CapabilitiesResponse
	err := c.do(ctx, http.MethodGet, APIVersion+"/capabilities", nil, &out)
	return out, err
}

// SetOffload applies offload parameters and toggles.
func (c *Client) SetOffload(ctx context.Context, req OffloadRequest) (OffloadResponse, error) {
	var out OffloadResponse
	err := c.do(ctx, http.MethodPost, APIVersion+"/offload", req, &out)
	return out, err
}

// AddSAs offloads bundles. With several bundles the request succeeds if any
// was offloaded; the results say which failed.
func (c *Client) AddSAs(ctx context.Context, specs []saspec.BundleSpec) (AddSAsResponse, error) {
	var out AddSAsResponse
	err := c.do(ctx, http.MethodPost, APIVersion+"/sas", map[string]any{"sas": specs}, &out)
	return out, err
}

// AddSAsRaw offloads bundles from a JSON document in any form the API
// accepts (one bundle, a list, or {"sas": [...]}).
func (c *Client) AddSAsRaw(ctx context.Context, doc []byte) (AddSAsResponse, error) {
	var out AddSAsResponse
	err := c.doRaw(ctx, http.MethodPost, APIVersion+"/sas", bytes.NewReader(doc), &out)
	return out, err
}

func keysQuery(keys bool) string {
	if keys {
		return "?keys=true"
	}
	return ""
}

// ListSAs lists every bundle, following the pages of the listing; keys
// includes key material. The answer holds the whole table: for a large
// one, EachSAPage keeps only a page at a time.
func (c *Client) ListSAs(ctx context.Context, keys bool) (ListSAsResponse, error) {
	var all ListSAsResponse
	err := c.EachSAPage(ctx, keys, 0, func(p ListSAsResponse) error {
		bs := append(all.Bundles, p.Bundles...)
		all = p
		all.Bundles, all.Next = bs, 0
		return nil
	})
	if all.Bundles == nil {
		all.Bundles = []sadb.BundleInfo{}
	}
	return all, err
}

// ListSAsPage returns one page of the listing: at most limit bundles
// (0: the daemon's default) with handles above after. Its Next is the
// after of the next page, 0 on the last.
func (c *Client) ListSAsPage(ctx context.Context, keys bool, after sa.Handle, limit int) (ListSAsResponse, error) {
	var out ListSAsResponse
	err := c.do(ctx, http.MethodGet, APIVersion+"/sas"+pageQueryString(keys, after, limit), nil, &out)
	return out, err
}

// EachSAPage calls fn with every page of the listing (pages of limit
// bundles; 0: the daemon's default), in handle order, until the last
// page or an error from fn.
func (c *Client) EachSAPage(ctx context.Context, keys bool, limit int, fn func(ListSAsResponse) error) error {
	var after sa.Handle
	for {
		p, err := c.ListSAsPage(ctx, keys, after, limit)
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
		if p.Next == 0 || p.Next <= after {
			return nil
		}
		after = p.Next
	}
}

func pageQueryString(keys bool, after sa.Handle, limit int) string {
	q := url.Values{}
	if keys {
		q.Set("keys", "true")
	}
	if after != 0 {
		q.Set("after", strconv.FormatUint(uint64(after), 10))
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// ShowSA describes one bundle by handle or name.
func (c *Client) ShowSA(ctx context.Context, ref string, keys bool) (sadb.BundleInfo, error) {
	var out sadb.BundleInfo
	err := c.do(ctx, http.MethodGet, APIVersion+"/sas/"+url.PathEscape(ref)+keysQuery(keys), nil, &out)
	return out, err
}

// DeleteSAs deletes bundles by handle or name.
func (c *Client) DeleteSAs(ctx context.Context, refs ...string) (DeleteSAsResponse, error) {
	req := DeleteSAsRequest{}
	for _, r := range refs {
		req.Refs = append(req.Refs, saspec.Ref(r))
	}
	var out DeleteSAsResponse
	err := c.do(ctx, http.MethodPost, APIVersion+"/sas/delete", req, &out)
	return out, err
}

// UpdateSA pushes new ESN high-order bits (NDIS UPDATE_SA).
func (c *Client) UpdateSA(ctx context.Context, ref string, u saspec.UpdateSpec) (sadb.BundleInfo, error) {
	var out sadb.BundleInfo
	err := c.do(ctx, http.MethodPost, APIVersion+"/sas/"+url.PathEscape(ref)+"/update", u, &out)
	return out, err
}

// AddPolicies installs policies.
func (c *Client) AddPolicies(ctx context.Context, specs []saspec.PolicySpec) (AddPoliciesResponse, error) {
	var out AddPoliciesResponse
	err := c.do(ctx, http.MethodPost, APIVersion+"/policies", map[string]any{"policies": specs}, &out)
	return out, err
}

// AddPoliciesRaw installs policies from a JSON document.
func (c *Client) AddPoliciesRaw(ctx context.Context, doc []byte) (AddPoliciesResponse, error) {
	var out AddPoliciesResponse
	err := c.doRaw(ctx, http.MethodPost, APIVersion+"/policies", bytes.NewReader(doc), &out)
	return out, err
}

// ListPolicies lists the policies.
func (c *Client) ListPolicies(ctx context.Context) (ListPoliciesResponse, error) {
	var out ListPoliciesResponse
	err := c.do(ctx, http.MethodGet, APIVersion+"/policies", nil, &out)
	return out, err
}

// DeletePolicy deletes a policy by ID or name.
func (c *Client) DeletePolicy(ctx context.Context, ref string) (DeletePolicyResponse, error) {
	var out DeletePolicyResponse
	err := c.do(ctx, http.MethodDelete, APIVersion+"/policies/"+url.PathEscape(ref), nil, &out)
	return out, err
}

// Stats returns the table's counters and the NIC's statistics, following
// the pages of the per-SA counters (the usage and the NIC's statistics are
// those of the last page).
func (c *Client) Stats(ctx context.Context) (StatsResponse, error) {
	var all StatsResponse
	var after sa.Handle
	for {
		p, err := c.StatsPage(ctx, after, 0)
		if err != nil {
			return all, err
		}
		sas := append(all.Table.SAs, p.Table.SAs...)
		all = p
		all.Table.SAs, all.Next = sas, 0
		if p.Next == 0 || p.Next <= after {
			return all, nil
		}
		after = p.Next
	}
}

// StatsPage returns the table's usage, the NIC's statistics and one page
// of the per-SA counters: those of at most limit bundles (0: the daemon's
// default) with handles above after. Its Next is the after of the next
// page, 0 on the last.
func (c *Client) StatsPage(ctx context.Context, after sa.Handle, limit int) (StatsResponse, error) {
	var out StatsResponse
	err := c.do(ctx, http.MethodGet, APIVersion+"/stats"+pageQueryString(false, after, limit), nil, &out)
	return out, err
}

// ErrStopEvents, returned by the callback of Events, ends the stream
// without error.
var ErrStopEvents = errors.New("stop following events")

// Events follows the event stream, calling fn for each event (the first is
// "subscribed") until ctx is done, the daemon closes the stream, or fn
// returns an error (ErrStopEvents ends it quietly).
func (c *Client) Events(ctx context.Context, fn func(sadb.Event) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+APIVersion+"/events", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.ErrorResponse) != nil {
			e.ErrorResponse.Error = resp.Status
		}
		return e
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var e sadb.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("malformed event %q: %w", sc.Text(), err)
		}
		if err := fn(e); err != nil {
			if errors.Is(err, ErrStopEvents) {
				return nil
			}
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return c.connError(err)
	}
	return nil
}

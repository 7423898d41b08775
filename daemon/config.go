package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/nic"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
)

// Config is the daemon's configuration file. It is YAML (or JSON) read
// with sigs.k8s.io/yaml onto the JSON tags below, so the SA and policy
// sections use exactly the schema of the control API and the CLI
// (sa.BundleSpec, sa.PolicySpec). docs/config.md documents every field and
// docs/config-example.yaml is a commented example.
type Config struct {
	// Name names the NIC in logs, metrics and the API (default "secnic0").
	Name string `json:"name,omitempty"`
	// LogLevel is debug, info (default), warn or error. It is applied
	// again on reload.
	LogLevel string `json:"log_level,omitempty"`
	// Netns, if set, is the path of a network namespace (e.g.
	// /run/netns/NAME) in which the host TUN device, the wire port and the
	// metrics listener are created. The control socket is a file and is
	// reachable from any namespace.
	Netns string `json:"netns,omitempty"`
	// Capabilities chooses the emulated card: a profile and overrides of
	// its hardware record and of the current configuration.
	Capabilities capabilities.Config `json:"capabilities,omitzero"`
	// Offload is the NIC's mode: "packet" (default; the host port is the
	// TUN device of Host and the NIC frames, numbers and checks every
	// packet) or "crypto" (the NDIS IPsecOV2 split: a host stack connects
	// to the driver socket of Driver, builds the headers and does
	// anti-replay; the NIC only encrypts, decrypts and checks ICVs). A
	// bundle's offload defaults to it; the other mode is refused.
	Offload string `json:"offload,omitempty"`
	// Driver configures the driver socket of a crypto-offload NIC.
	Driver DriverConfig `json:"driver,omitzero"`
	// Host is the host port: the TUN device the local stack sends into.
	Host HostConfig `json:"host,omitzero"`
	// Wire is the wire port: where protected packets go.
	Wire WireConfig `json:"wire"`
	// EncapPort is the RFC 3948 UDP encapsulation port recognised on
	// receive: 0 means 4500, -1 disables UDP-encapsulated ESP.
	EncapPort int `json:"encap_port,omitempty"`
	// DefaultPolicy is the action for traffic no policy matches.
	DefaultPolicy DefaultPolicy `json:"default_policy,omitzero"`
	// Datapath holds tuning knobs of the NIC's datapath.
	Datapath DatapathConfig `json:"datapath,omitzero"`
	// Metrics configures the Prometheus endpoint.
	Metrics MetricsConfig `json:"metrics,omitzero"`
	// Control configures the control API socket.
	Control ControlConfig `json:"control,omitzero"`
	// Capture configures pcap captures of the host and the wire side.
	Capture CaptureConfig `json:"capture,omitzero"`
	// StateDir is the state directory: the key-use ledger that keeps
	// outbound sequence numbers and inbound replay windows across deletes,
	// reloads and restarts (docs/reliability.md). Empty means
	// $STATE_DIRECTORY/NAME under systemd, else /var/lib/secnic/NAME;
	// "none" keeps that state in memory only.
	StateDir string `json:"state_dir,omitempty"`
	// AllowNonceReuseAcrossRestarts lets a daemon without a state
	// directory (state_dir: none) load outbound SAs with static keys of
	// counter-mode algorithms, whose nonces then repeat after every
	// restart. For throwaway labs only; each such SA is logged as a
	// warning.
	AllowNonceReuseAcrossRestarts bool `json:"allow_nonce_reuse_across_restarts,omitempty"`
	// InsecureKeyFilePermissions accepts a configuration file with keys
	// that group or others may read, with a warning instead of a refusal
	// (for labs; see docs/config.md).
	InsecureKeyFilePermissions bool `json:"insecure_key_file_permissions,omitempty"`
	// State holds the "sas" and "policies" sections: the bundles and
	// policies loaded at start and reconciled on SIGHUP. Every entry needs
	// a name, which identifies it across reloads.
	saspec.State

	warnings []string // from LoadConfig; see Warnings
}

// DriverConfig is the driver socket of a crypto-offload NIC (package
// driver; docs/driver-interface.md).
type DriverConfig struct {
	// Socket is the path of the SOCK_SEQPACKET unix socket a host stack
	// connects to (default /run/secnic/NAME-driver.sock). Mode 0600.
	Socket string `json:"socket,omitempty"`
}

// offloadMode returns the configured mode, packet by default.
func (c *Config) offloadMode() capabilities.OffloadMode {
	if c.Offload == "" {
		return capabilities.OffloadPacket
	}
	return capabilities.OffloadMode(c.Offload)
}

func (c *Config) driverSocket() string {
	if c.Driver.Socket != "" {
		return c.Driver.Socket
	}
	return "/run/secnic/" + c.nicName() + "-driver.sock"
}

// HostConfig is the host port.
type HostConfig struct {
	// Type is "tun" (default) or "memory" (an in-process port for tests;
	// see Daemon.HostPeer).
	Type string `json:"type,omitempty"`
	// Name is the TUN interface name (default: the NIC's name; "%d" lets
	// the kernel number it).
	Name string `json:"name,omitempty"`
	// MTU is the TUN MTU: a number, or "auto" (the default) for the wire
	// MTU minus the worst-case overhead of the outbound SAs, kept up to
	// date as SAs come and go.
	MTU MTU `json:"mtu,omitzero"`
	// Addresses are assigned to the TUN device (prefixes such as
	// 10.0.1.1/24 or fd00:1::1/64).
	Addresses []string `json:"addresses,omitempty"`
	// Routes are installed through the TUN device.
	Routes []RouteConfig `json:"routes,omitempty"`
	// DisableOffloads opens the TUN device without IFF_VNET_HDR (one
	// packet per system call; for debugging).
	DisableOffloads bool `json:"disable_offloads,omitempty"`
	// TxQueueLen is the TUN device's transmit queue in packets (what
	// `ip link set txqueuelen` sets): the packets the kernel holds for
	// the NIC while its reader waits for a CPU; 0 means
	// tun.DefaultTxQueueLen.
	TxQueueLen int `json:"txqueuelen,omitempty"`
}

// RouteConfig is a route through the TUN device.
type RouteConfig struct {
	// Dst is the destination prefix, e.g. 10.0.2.0/24.
	Dst string `json:"dst"`
	// Via is an optional next hop of the same family.
	Via string `json:"via,omitempty"`
}

// MTU is an MTU in bytes; 0 means "auto". In the file it is a number or
// the string "auto".
type MTU int

// MarshalJSON writes "auto" for 0.
func (m MTU) MarshalJSON() ([]byte, error) {
	if m == 0 {
		return []byte(`"auto"`), nil
	}
	return []byte(strconv.Itoa(int(m))), nil
}

// UnmarshalJSON reads a number or "auto".
func (m *MTU) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		s = strings.TrimSpace(strings.ToLower(s))
		if s == "auto" || s == "" {
			*m = 0
			return nil
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("mtu: %q is neither a number nor \"auto\"", s)
		}
		*m = MTU(v)
		return nil
	}
	var v int
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("mtu: %s is neither a number nor \"auto\"", b)
	}
	*m = MTU(v)
	return nil
}

// Host port types.
const (
	HostTUN    = "tun"
	HostMemory = "memory"
)

// Wire port types.
const (
	WireUDP    = "udp"
	WireLink   = "link"
	WireMemory = "memory"
)

// WireConfig is the wire port.
type WireConfig struct {
	// Type is "udp" (a point-to-point cable to another secnic over UDP),
	// "link" (real ESP/AH packets on a Linux interface) or "memory" (an
	// in-process cable between two daemons in one process, for tests).
	Type string `json:"type"`
	// Local and Peer are the UDP cable's endpoints, "ADDR:PORT" (udp).
	Local string `json:"local,omitempty"`
	Peer  string `json:"peer,omitempty"`
	// MTU is the largest packet the cable carries (udp and memory;
	// default 1500). A link port takes the interface's MTU.
	MTU int `json:"mtu,omitempty"`
	// Interface is the Linux interface of a link port, e.g. eth0 (link).
	Interface string `json:"interface,omitempty"`
	// Method is how a link port moves packets: auto (default), ring, xdp
	// or mmsg (wire.LinkConfig.Method).
	Method string `json:"method,omitempty"`
	// Cable names the in-process cable; the two daemons that name the same
	// cable are connected (memory).
	Cable string `json:"cable,omitempty"`
	// Batch is the number of packets per system call (default 64).
	Batch int `json:"batch,omitempty"`
	// SocketBuffer sets the socket buffers in bytes (default 7 MiB for udp, 4 MiB for link).
	SocketBuffer int `json:"socket_buffer,omitempty"`
	// Faults injects seeded faults into the packets sent to the wire, for
	// tests and labs (see FaultsConfig); nil means none.
	Faults *FaultsConfig `json:"faults,omitempty"`
}

// DefaultPolicy holds the actions for traffic that no policy matches.
type DefaultPolicy struct {
	// Out is the action for packets from the host: bypass (default) or
	// discard.
	Out string `json:"out,omitempty"`
	// In is the action for unprotected packets from the wire: bypass
	// (default) or discard. A protected packet always needs a protect
	// policy that lists its bundle.
	In string `json:"in,omitempty"`
}

// maxCPUs bounds datapath.cpus.
const maxCPUs = 4096

// DatapathConfig tunes the datapath; zero values take the NIC's defaults.
type DatapathConfig struct {
	// WireMTU caps the datagrams sent to the wire below the wire port's
	// MTU (larger protected packets are fragmented, or answered with ICMP).
	WireMTU int `json:"wire_mtu,omitempty"`
	// ReassemblySlots bounds the datagrams reassembled at once (default 32).
	ReassemblySlots int `json:"reassembly_slots,omitempty"`
	// ReassemblyTimeout drops incomplete datagrams, e.g. "10s" (default).
	ReassemblyTimeout Duration `json:"reassembly_timeout,omitzero"`
	// ICMPRate limits ICMP too-big messages per second (default 100,
	// negative = unlimited).
	ICMPRate int `json:"icmp_rate,omitempty"`
	// AcquirePeriod is the least time between two acquire events of one
	// outbound protect policy without a usable SA, e.g. "30s" (default,
	// Linux's XFRM_ACQ_EXPIRES); negative turns acquire events off.
	AcquirePeriod Duration `json:"acquire_period,omitzero"`
	// Workers is the number of datapath workers per direction (0 = the
	// NIC's default, -1 = one per CPU).
	Workers int `json:"workers,omitempty"`
	// BusyPoll is how long the datapath polls a port after a batch before
	// it sleeps, e.g. "20us" (0 = the NIC's default, negative = off).
	BusyPoll Duration `json:"busy_poll,omitzero"`
	// CPUs is how many CPUs the daemon's code runs on at once (Go's
	// GOMAXPROCS), 0 = every CPU the process may use. Where several
	// daemons share a small machine, a share each saves the scheduler's
	// hand-offs between them (docs/performance.md). Run and RunFile
	// apply it (it is process-wide); a restart changes it.
	CPUs int `json:"cpus,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("10s").
type Duration time.Duration

// String formats the duration like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "500ms" or "10s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("durations are strings such as \"10s\" or \"500ms\", not %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration: write e.g. \"10s\" or \"500ms\"", s)
	}
	*d = Duration(v)
	return nil
}

// MetricsConfig configures the Prometheus endpoint.
type MetricsConfig struct {
	// Listen is the HOST:PORT to serve /metrics on, e.g. 127.0.0.1:9477;
	// empty disables the endpoint.
	Listen string `json:"listen,omitempty"`
}

// DefaultSocket is the control socket when the configuration names none
// (the CLI's default too).
const DefaultSocket = control.DefaultSocket

// ControlConfig configures the control API.
type ControlConfig struct {
	// Socket is the path of the unix socket (default
	// /run/secnic/secnic.sock). It is created with mode 0600 in a
	// directory of mode 0700 (created if missing).
	Socket string `json:"socket,omitempty"`
	// Disabled turns the control API off.
	Disabled bool `json:"disabled,omitempty"`
}

// CaptureConfig configures the pcap captures.
type CaptureConfig struct {
	// Host and Wire are pcap file paths (written with mode 0600); empty
	// means no capture of that side.
	Host string `json:"host,omitempty"`
	Wire string `json:"wire,omitempty"`
	// SnapLen truncates captured packets (default 65535 bytes).
	SnapLen int `json:"snaplen,omitempty"`
	// Queue is the number of packets queued for the capture writer
	// (default 1024); when it is full, packets are not captured (counted).
	Queue int `json:"queue,omitempty"`
}

// ConfigError is a configuration that cannot be used: every problem found,
// each naming its field.
type ConfigError struct {
	// Source is the file name, or "".
	Source string
	// Problems are "field: what is wrong and what to do" lines.
	Problems []string
}

// Error lists the problems.
func (e *ConfigError) Error() string {
	src := "configuration"
	if e.Source != "" {
		src = "configuration " + e.Source
	}
	if len(e.Problems) == 1 {
		return src + ": " + e.Problems[0]
	}
	return src + " has " + strconv.Itoa(len(e.Problems)) + " problems:\n  " + strings.Join(e.Problems, "\n  ")
}

// Unwrap makes errors.Is(err, sa.ErrInvalid) true.
func (e *ConfigError) Unwrap() error { return saspec.ErrInvalid }

// ParseConfig reads a configuration from YAML or JSON and validates it.
// Unknown fields are errors, so that typos are reported.
func ParseConfig(data []byte) (*Config, error) {
	return parseConfig(data, "")
}

// LoadConfig reads and validates the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w (give the path of a YAML file; see docs/config-example.yaml)", err)
	}
	c, err := parseConfig(data, path)
	if err != nil {
		return nil, err
	}
	if err := c.checkKeyFile(path); err != nil {
		c.wipe()
		return nil, err
	}
	return c, nil
}

func parseConfig(data []byte, source string) (*Config, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ConfigError{Source: source, Problems: []string{"the file is empty; at least the wire section is required (see docs/config-example.yaml)"}}
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, &ConfigError{Source: source, Problems: []string{"not valid YAML: " + err.Error()}}
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, &ConfigError{Source: source, Problems: []string{"the file holds no settings; at least the wire section is required (see docs/config-example.yaml)"}}
	}
	var c Config
	if err := saspec.DecodeJSONStrict(js, &c); err != nil {
		msg := strings.TrimPrefix(err.Error(), "sa: ")
		return nil, &ConfigError{Source: source, Problems: []string{msg}}
	}
	if err := c.validate(source); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the configuration and returns a *ConfigError listing
// every problem, or nil.
func (c *Config) Validate() error { return c.validate("") }

func (c *Config) validate(source string) error {
	var p []string
	add := func(field, format string, args ...any) {
		p = append(p, field+": "+fmt.Sprintf(format, args...))
	}

	if c.Name != "" && !validName(c.Name) {
		add("name", "%q is not a valid name: use letters, digits, '.', '_' or '-' (at most 32)", c.Name)
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		add("log_level", "%v", err)
	}
	if c.StateDir != "" && c.StateDir != StateNone && !filepath.IsAbs(c.StateDir) {
		add("state_dir", "%q must be an absolute path, or none", c.StateDir)
	}
	if c.AllowNonceReuseAcrossRestarts && c.StateDir != StateNone {
		add("allow_nonce_reuse_across_restarts", "only applies with state_dir: none (a state directory prevents the reuse)")
	}
	if !c.AllowNonceReuseAcrossRestarts {
		p = append(p, c.nonceReuse()...)
	}
	if c.Netns != "" && !filepath.IsAbs(c.Netns) {
		add("netns", "%q must be an absolute path, e.g. /run/netns/NAME", c.Netns)
	}
	if _, _, err := c.Capabilities.Build(); err != nil {
		add("capabilities", "%v", err)
	}

	// Offload mode and driver socket.
	switch m, err := capabilities.ParseOffloadMode(c.Offload); {
	case err != nil:
		add("offload", "%q is not an offload mode: give packet (default) or crypto", c.Offload)
	case m == capabilities.OffloadCrypto:
		if c.Host.Type != "" || len(c.Host.Addresses) > 0 || len(c.Host.Routes) > 0 {
			add("host", "applies to packet offload (the TUN device); with offload: crypto the host stack connects to driver.socket instead")
		}
	default:
		if c.Driver != (DriverConfig{}) {
			add("driver", "applies to offload: crypto only")
		}
	}
	if s := c.Driver.Socket; s != "" && !filepath.IsAbs(s) {
		add("driver.socket", "%q must be an absolute path, e.g. /run/secnic/secnic0-driver.sock", s)
	}

	// Host port.
	switch c.Host.Type {
	case "", HostTUN, HostMemory:
	default:
		add("host.type", "%q is not a host port type: give tun or memory", c.Host.Type)
	}
	if n := c.hostName(); len(n) > 15 || strings.ContainsAny(n, "/ \t\n:") {
		add("host.name", "%q is not a valid interface name: at most 15 bytes, no '/', ':' or spaces", n)
	}
	if m := int(c.Host.MTU); m != 0 && (m < 68 || m > 65535) {
		add("host.mtu", "%d is out of range: give 68 to 65535, or auto", m)
	}
	if q := c.Host.TxQueueLen; q < 0 || q > tun.MaxTxQueueLen {
		add("host.txqueuelen", "%d is out of range: give 1 to %d packets, or 0 for the default (%d)", q, tun.MaxTxQueueLen, tun.DefaultTxQueueLen)
	}
	v6 := false
	for i, a := range c.Host.Addresses {
		pr, err := netip.ParsePrefix(a)
		if err != nil {
			add(fmt.Sprintf("host.addresses[%d]", i), "%q is not an address with a prefix length, e.g. 10.0.1.1/24 or fd00:1::1/64", a)
			continue
		}
		v6 = v6 || pr.Addr().Is6()
	}
	for i, r := range c.Host.Routes {
		f := fmt.Sprintf("host.routes[%d]", i)
		dst, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			add(f+".dst", "%q is not a prefix, e.g. 10.0.2.0/24", r.Dst)
			continue
		}
		v6 = v6 || dst.Addr().Is6()
		if r.Via != "" {
			via, err := netip.ParseAddr(r.Via)
			switch {
			case err != nil:
				add(f+".via", "%q is not an IP address", r.Via)
			case via.Is4() != dst.Addr().Is4():
				add(f+".via", "next hop %s and destination %s are of different IP families", r.Via, r.Dst)
			}
		}
	}
	if m := int(c.Host.MTU); v6 && m != 0 && m < 1280 {
		add("host.mtu", "%d is below the IPv6 minimum of 1280, but IPv6 addresses or routes are configured", m)
	}

	// Wire port.
	w := c.Wire
	switch w.Type {
	case WireUDP:
		l, errL := netip.ParseAddrPort(w.Local)
		r, errR := netip.ParseAddrPort(w.Peer)
		if errL != nil {
			add("wire.local", "%q is not ADDR:PORT, e.g. 192.168.1.1:4789 or [fd00::1]:4789", w.Local)
		}
		if errR != nil {
			add("wire.peer", "%q is not ADDR:PORT, e.g. 192.168.1.2:4789", w.Peer)
		}
		if errL == nil && errR == nil && l.Addr().Unmap().Is4() != r.Addr().Unmap().Is4() {
			add("wire.peer", "%s and local %s are of different IP families", w.Peer, w.Local)
		}
		if w.MTU != 0 && (w.MTU < 576 || w.MTU > 65507) {
			add("wire.mtu", "%d is out of range for a udp cable: give 576 to 65507", w.MTU)
		}
		if w.Interface != "" || w.Cable != "" {
			add("wire", "interface and cable do not apply to a udp port")
		}
	case WireLink:
		if w.Interface == "" {
			add("wire.interface", "is missing: name the Linux interface, e.g. eth0")
		} else if len(w.Interface) > 15 {
			add("wire.interface", "%q is longer than 15 bytes", w.Interface)
		}
		if w.Local != "" || w.Peer != "" || w.Cable != "" || w.MTU != 0 {
			add("wire", "local, peer, mtu and cable do not apply to a link port (it uses the interface's addresses and MTU)")
		}
		switch w.Method {
		case "", "auto", "ring", "xdp", "mmsg": // wire.LinkAuto, LinkRing, LinkXDP, LinkMmsg
		default:
			add("wire.method", "%q is not a link method: give auto, ring, xdp or mmsg", w.Method)
		}
	case WireMemory:
		if w.Cable == "" {
			add("wire.cable", "is missing: name the in-process cable; two daemons naming the same cable are connected")
		}
		if w.MTU != 0 && (w.MTU < 576 || w.MTU > 65535) {
			add("wire.mtu", "%d is out of range: give 576 to 65535", w.MTU)
		}
	case "":
		add("wire.type", "is missing: give udp, link or memory")
	default:
		add("wire.type", "%q is not a wire port type: give udp, link or memory", w.Type)
	}
	if w.Batch < 0 || w.Batch > 1024 {
		add("wire.batch", "%d is out of range: give 1 to 1024", w.Batch)
	}
	if w.SocketBuffer < 0 {
		add("wire.socket_buffer", "must not be negative")
	}
	p = append(p, w.Faults.problems("wire.faults")...)

	if c.EncapPort < -1 || c.EncapPort > 65535 {
		add("encap_port", "%d is not a UDP port: give 1 to 65535, 0 for 4500, or -1 to disable UDP encapsulation", c.EncapPort)
	}
	if _, err := defaultAction(c.DefaultPolicy.Out); err != nil {
		add("default_policy.out", "%v", err)
	}
	if _, err := defaultAction(c.DefaultPolicy.In); err != nil {
		add("default_policy.in", "%v", err)
	}
	if d := c.Datapath; d.WireMTU != 0 && (d.WireMTU < 576 || d.WireMTU > 65535) {
		add("datapath.wire_mtu", "%d is out of range: give 576 to 65535", d.WireMTU)
	}
	if c.Datapath.ReassemblySlots < 0 {
		add("datapath.reassembly_slots", "must not be negative")
	}
	if c.Datapath.ReassemblyTimeout < 0 {
		add("datapath.reassembly_timeout", "must not be negative")
	}
	if w := c.Datapath.Workers; w < -1 || w > nic.MaxWorkers {
		add("datapath.workers", "%d is out of range: give 0 (default), -1 (one per CPU) or 1 to %d", w, nic.MaxWorkers)
	}
	if n := c.Datapath.CPUs; n < 0 || n > maxCPUs {
		add("datapath.cpus", "%d is out of range: give 0 (every CPU, the default) or 1 to %d", n, maxCPUs)
	}
	if b := time.Duration(c.Datapath.BusyPoll); b > time.Millisecond {
		add("datapath.busy_poll", "%v is more than 1ms: busy-polling burns CPU; give a few microseconds, 0 for the default or a negative duration for off", b)
	}

	if l := c.Metrics.Listen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			add("metrics.listen", "%q is not HOST:PORT, e.g. 127.0.0.1:9477 or [::1]:9477", l)
		}
	}
	if s := c.Control.Socket; s != "" {
		if !filepath.IsAbs(s) {
			add("control.socket", "%q must be an absolute path, e.g. /run/secnic/secnic.sock", s)
		} else if len(s) > 107 {
			add("control.socket", "%q is longer than the 107 bytes a unix socket path may have", s)
		}
	}
	if c.Capture.SnapLen < 0 || c.Capture.SnapLen > 262144 {
		add("capture.snaplen", "%d is out of range: give 1 to 262144", c.Capture.SnapLen)
	}
	if c.Capture.Queue < 0 {
		add("capture.queue", "must not be negative")
	}
	if c.Capture.Host != "" && c.Capture.Host == c.Capture.Wire {
		add("capture.wire", "is the same file as capture.host; give two files")
	}

	p = append(p, validateState(c.State)...)
	if len(p) == 0 && len(c.SAs)+len(c.Policies) > 0 {
		// Everything that needs a table: key lengths, what the
		// capabilities allow, SPI clashes, capacity.
		p = append(p, c.tryState()...)
	}
	if len(p) > 0 {
		return &ConfigError{Source: source, Problems: p}
	}
	return nil
}

// tryState loads the sas and policies into a scratch table under the
// configured capabilities and returns what fails.
func (c *Config) tryState() []string {
	caps, err := capabilities.NewManagerFromConfig(c.Capabilities)
	if err != nil {
		return []string{"capabilities: " + err.Error()}
	}
	if err := caps.SetOffloadMode(c.offloadMode()); err != nil {
		return []string{"offload: " + err.Error()}
	}
	scratch, err := sadb.NewTable(sadb.TableConfig{Caps: caps, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return []string{err.Error()}
	}
	defer scratch.Close()
	state := c.state()
	defer wipeState(&state)
	sum, err := scratch.Reconcile(state)
	if err != nil {
		return []string{trimSA(err)}
	}
	return failureLines(sum.Failed, state)
}

// validateState checks the sas and policies sections without a table:
// names present and unique, every spec valid on its own, and every
// policy's bundle references declared.
func validateState(s saspec.State) []string {
	var p []string
	names := map[string]bool{}
	for i, b := range s.SAs {
		f := fmt.Sprintf("sas[%d]", i)
		switch {
		case b.Name == "":
			p = append(p, f+".name: is missing: every bundle in the configuration needs a name, which identifies it across reloads")
		case names[b.Name]:
			p = append(p, fmt.Sprintf("%s.name: %q is declared twice; bundle names must be unique", f, b.Name))
		}
		names[b.Name] = true
		for _, s := range []*saspec.SASpec{b.ESP, b.AH} {
			if s != nil && s.KeysRedacted {
				p = append(p, f+": keys_redacted is set: this bundle was exported without keys; give enc_key/auth_key instead")
			}
		}
		if err := b.Validate(); err != nil {
			p = append(p, prefixed(f, err))
		}
	}
	pnames := map[string]bool{}
	for i, pol := range s.Policies {
		f := fmt.Sprintf("policies[%d]", i)
		switch {
		case pol.Name == "":
			p = append(p, f+".name: is missing: every policy in the configuration needs a name, which identifies it across reloads")
		case pnames[pol.Name]:
			p = append(p, fmt.Sprintf("%s.name: %q is declared twice; policy names must be unique", f, pol.Name))
		}
		pnames[pol.Name] = true
		if err := pol.Validate(); err != nil {
			p = append(p, prefixed(f, err))
		}
		for j, r := range pol.Bundles {
			if _, err := strconv.ParseUint(string(r), 10, 64); err == nil {
				continue // a handle: resolved at run time
			}
			if !names[string(r)] {
				p = append(p, fmt.Sprintf("%s.bundles[%d]: %q is not a bundle declared in sas", f, j, r))
			}
		}
	}
	return p
}

// prefixed turns an sa error into "prefix.field: message".
func prefixed(prefix string, err error) string {
	var e *saspec.Error
	if errors.As(err, &e) {
		if e.Field == "" {
			return prefix + ": " + e.Msg
		}
		return prefix + "." + e.Field + ": " + e.Msg
	}
	return prefix + ": " + strings.TrimPrefix(err.Error(), "sa: ")
}

func validName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// ParseLevel reads a log level name: debug, info (also ""), warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not a log level: give debug, info, warn or error", s)
}

func defaultAction(s string) (saspec.Action, error) {
	if s == "" {
		return saspec.Bypass, nil
	}
	a, err := saspec.ParseAction(s)
	if err != nil {
		return 0, err
	}
	if a == saspec.Protect {
		return 0, errors.New("protect needs bundles, so it cannot be a default: give bypass or discard")
	}
	return a, nil
}

// nicName returns the NIC's name.
// StateNone turns the state directory off (state_dir: none).
const StateNone = "none"

// DefaultStateRoot is where state directories live without systemd.
const DefaultStateRoot = "/var/lib/secnic"

// stateDir returns the state directory, or "" for state_dir: none.
func (c *Config) stateDir() string {
	switch c.StateDir {
	case StateNone:
		return ""
	case "":
		root := DefaultStateRoot
		if env := os.Getenv("STATE_DIRECTORY"); env != "" {
			// systemd's StateDirectory=; several are separated by colons.
			root, _, _ = strings.Cut(env, ":")
		}
		return filepath.Join(root, c.nicName())
	}
	return c.StateDir
}

// counterMode reports whether an encryption algorithm derives its nonce
// from the sequence number (so a restart under the same key repeats it).
func counterMode(enc string) bool {
	e := strings.ToLower(enc)
	return strings.HasPrefix(e, "aes-gcm") || strings.HasPrefix(e, "aes-gmac") || strings.HasPrefix(e, "aes-ctr") || strings.HasPrefix(e, "chacha20")
}

// nonceReuse lists the configured outbound SAs whose static counter-mode
// keys would repeat nonces after a restart because there is no state
// directory.
func (c *Config) nonceReuse() []string {
	if c.StateDir != StateNone {
		return nil
	}
	var out []string
	for i, b := range c.SAs {
		if !strings.EqualFold(b.Dir, "out") || b.ESP == nil || !counterMode(b.ESP.Enc) {
			continue
		}
		out = append(out, fmt.Sprintf("sas[%d] (%q): an outbound %s SA with a static key and state_dir: none repeats its nonces after every restart (sequence numbers start at 1 again); remove state_dir: none, or for a throwaway lab set allow_nonce_reuse_across_restarts: true", i, b.Name, b.ESP.Enc))
	}
	return out
}

func (c *Config) nicName() string {
	if c.Name == "" {
		return "secnic0"
	}
	return c.Name
}

// hostName returns the TUN interface name.
func (c *Config) hostName() string {
	if c.Host.Name != "" {
		return c.Host.Name
	}
	return c.nicName()
}

// socketPath returns the control socket path.
func (c *Config) socketPath() string {
	if c.Control.Socket == "" {
		return DefaultSocket
	}
	return c.Control.Socket
}

// State returns a deep copy of the sas and policies sections, keys
// included.
func (c *Config) state() saspec.State {
	var s saspec.State
	for _, b := range c.SAs {
		s.SAs = append(s.SAs, b.Clone())
	}
	for _, p := range c.Policies {
		s.Policies = append(s.Policies, p.Clone())
	}
	return s
}

// wipe zeroes the key material held by the configuration.
func (c *Config) wipe() {
	for i := range c.SAs {
		c.SAs[i].Wipe()
	}
}

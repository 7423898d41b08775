package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secnic/secnic/saspec"
)

const minimal = `
state_dir: none
wire:
  type: memory
  cable: c1
`

const sasAndPolicies = `
sas:
  - name: out1
    dir: out
    mode: tunnel
    src: 192.0.2.1
    dst: 192.0.2.2
    esp: {spi: 0x1001, enc: aes-gcm-128, enc_key: "0x000102030405060708090a0b0c0d0e0f10111213"}
  - name: in1
    dir: in
    mode: tunnel
    src: 192.0.2.2
    dst: 192.0.2.1
    esp: {spi: 0x2001, enc: aes-gcm-128, enc_key: "0x101112131415161718191a1b1c1d1e1f20212223"}
policies:
  - {name: p-out, dir: out, src: 10.1.0.0/16, dst: 10.2.0.0/16, bundles: [out1]}
  - {name: p-in, dir: in, src: 10.2.0.0/16, dst: 10.1.0.0/16, bundles: [in1]}
`

func TestParseConfigValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"minimal", minimal, func(t *testing.T, c *Config) {
			if c.nicName() != "secnic0" || c.hostName() != "secnic0" || c.socketPath() != DefaultSocket || c.Host.MTU != 0 {
				t.Errorf("defaults: name %q host %q socket %q mtu %d", c.nicName(), c.hostName(), c.socketPath(), c.Host.MTU)
			}
		}},
		{"json", `{"name": "n1", "wire": {"type": "memory", "cable": "x"}, "host": {"mtu": 1400}}`, func(t *testing.T, c *Config) {
			if c.Name != "n1" || c.Host.MTU != 1400 {
				t.Errorf("got %+v", c)
			}
		}},
		{"mtu-auto", minimal + "host: {mtu: auto}\n", func(t *testing.T, c *Config) {
			if c.Host.MTU != 0 {
				t.Errorf("mtu %d, want 0 (auto)", c.Host.MTU)
			}
		}},
		{"mtu-quoted-number", minimal + "host: {mtu: \"1400\"}\n", func(t *testing.T, c *Config) {
			if c.Host.MTU != 1400 {
				t.Errorf("mtu %d", c.Host.MTU)
			}
		}},
		{"static-keys-without-state-lab", minimal + "allow_nonce_reuse_across_restarts: true\n" + sasAndPolicies, func(t *testing.T, c *Config) {
			if !c.AllowNonceReuseAcrossRestarts || len(c.nonceReuse()) != 1 {
				t.Errorf("allow %v, reuse %v", c.AllowNonceReuseAcrossRestarts, c.nonceReuse())
			}
		}},
		{"default-state-dir", "wire: {type: memory, cable: c1}\nname: n7\n", func(t *testing.T, c *Config) {
			t.Setenv("STATE_DIRECTORY", "")
			if got := c.stateDir(); got != "/var/lib/secnic/n7" {
				t.Errorf("default state dir %q", got)
			}
			t.Setenv("STATE_DIRECTORY", "/var/lib/secnic:/other")
			if got := c.stateDir(); got != "/var/lib/secnic/n7" {
				t.Errorf("systemd state dir %q", got)
			}
			t.Setenv("STATE_DIRECTORY", "/srv/state")
			if got := c.stateDir(); got != "/srv/state/n7" {
				t.Errorf("systemd state dir %q", got)
			}
		}},
		{"duration", minimal + "datapath: {reassembly_timeout: 2500ms}\n", func(t *testing.T, c *Config) {
			if c.Datapath.ReassemblyTimeout.String() != "2.5s" {
				t.Errorf("timeout %v", c.Datapath.ReassemblyTimeout)
			}
		}},
		{"acquire-period", minimal + "datapath: {acquire_period: -1s}\n", func(t *testing.T, c *Config) {
			if c.Datapath.AcquirePeriod.String() != "-1s" {
				t.Errorf("acquire period %v", c.Datapath.AcquirePeriod)
			}
		}},
		{"sas-and-policies", strings.Replace(minimal, "state_dir: none", "state_dir: /var/lib/secnic/test", 1) + sasAndPolicies, func(t *testing.T, c *Config) {
			if c.stateDir() != "/var/lib/secnic/test" {
				t.Errorf("state dir %q", c.stateDir())
			}
			if len(c.SAs) != 2 || len(c.Policies) != 2 || c.SAs[0].ESP.EncKey.Len() != 20 {
				t.Errorf("got %d SAs, %d policies", len(c.SAs), len(c.Policies))
			}
		}},
		{"udp", "wire: {type: udp, local: '192.0.2.1:4789', peer: '192.0.2.2:4789'}\n", func(t *testing.T, c *Config) {
			if c.Wire.Local != "192.0.2.1:4789" {
				t.Errorf("local %q", c.Wire.Local)
			}
		}},
		{"link", "wire: {type: link, interface: eth1}\nencap_port: -1\n", func(t *testing.T, c *Config) {
			if c.EncapPort != -1 {
				t.Errorf("encap_port %d", c.EncapPort)
			}
		}},
		{"capabilities", minimal + "capabilities: {profile: ixgbe, current: {esp: true}}\n", func(t *testing.T, c *Config) {
			if c.Capabilities.Profile != "ixgbe" {
				t.Errorf("profile %q", c.Capabilities.Profile)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"empty", "", []string{"empty"}},
		{"comments-only", "# nothing\n", []string{"no settings"}},
		{"not-yaml", "wire: [\n", []string{"not valid YAML"}},
		{"unknown-field", minimal + "wirre: 1\n", []string{"unknown field", "wirre"}},
		{"no-wire", "name: x\n", []string{"wire.type: is missing"}},
		{"bad-wire-type", "wire: {type: serial}\n", []string{"wire.type", "serial"}},
		{"bad-name", minimal + "name: 'a b'\n", []string{"name:", "not a valid name"}},
		{"bad-level", minimal + "log_level: loud\n", []string{"log_level", "loud"}},
		{"relative-netns", minimal + "netns: foo\n", []string{"netns", "absolute"}},
		{"bad-profile", minimal + "capabilities: {profile: e1000}\n", []string{"capabilities:", "e1000"}},
		{"bad-host-type", minimal + "host: {type: tap}\n", []string{"host.type"}},
		{"long-host-name", minimal + "host: {name: abcdefghijklmnopq}\n", []string{"host.name"}},
		{"mtu-range", minimal + "host: {mtu: 40}\n", []string{"host.mtu", "68 to 65535"}},
		{"mtu-word", minimal + "host: {mtu: big}\n", []string{"mtu", "auto"}},
		{"mtu-v6-min", minimal + "host: {mtu: 1000, addresses: ['fd00::1/64']}\n", []string{"host.mtu", "1280"}},
		{"bad-address", minimal + "host: {addresses: [10.0.0.1]}\n", []string{"host.addresses[0]", "prefix length"}},
		{"bad-route", minimal + "host: {routes: [{dst: nowhere}]}\n", []string{"host.routes[0].dst"}},
		{"route-family", minimal + "host: {routes: [{dst: 10.0.0.0/8, via: 'fd00::1'}]}\n", []string{"host.routes[0].via", "families"}},
		{"udp-no-peer", "wire: {type: udp, local: '1.2.3.4:1'}\n", []string{"wire.peer"}},
		{"udp-families", "wire: {type: udp, local: '192.0.2.1:1', peer: '[fd00::1]:1'}\n", []string{"wire.peer", "families"}},
		{"udp-mtu", "wire: {type: udp, local: '192.0.2.1:1', peer: '192.0.2.2:1', mtu: 100}\n", []string{"wire.mtu"}},
		{"link-no-if", "wire: {type: link}\n", []string{"wire.interface: is missing"}},
		{"link-method", "wire: {type: link, interface: eth0, method: afxdp}\n", []string{"wire.method", "auto, ring, xdp or mmsg"}},
		{"cpus", minimal + "datapath: {cpus: -1}\n", []string{"datapath.cpus", "out of range"}},
		{"txqueuelen", minimal + "host: {txqueuelen: -5}\n", []string{"host.txqueuelen", "out of range"}},
		{"link-with-peer", "wire: {type: link, interface: eth0, peer: '1.2.3.4:5'}\n", []string{"do not apply to a link port"}},
		{"memory-no-cable", "wire: {type: memory}\n", []string{"wire.cable: is missing"}},
		{"encap-port", minimal + "encap_port: 70000\n", []string{"encap_port"}},
		{"default-protect", minimal + "default_policy: {out: protect}\n", []string{"default_policy.out", "bypass or discard"}},
		{"default-bad", minimal + "default_policy: {in: maybe}\n", []string{"default_policy.in"}},
		{"wire-mtu", minimal + "datapath: {wire_mtu: 100}\n", []string{"datapath.wire_mtu"}},
		{"static-keys-without-state", minimal + sasAndPolicies, []string{"sas[0]", "state_dir: none", "allow_nonce_reuse_across_restarts"}},
		{"allow-reuse-with-state", "state_dir: /x\nallow_nonce_reuse_across_restarts: true\nwire: {type: memory, cable: c}\n", []string{"only applies with state_dir: none"}},
		{"relative-state-dir", "state_dir: x\nwire: {type: memory, cable: c}\n", []string{"state_dir", "absolute"}},
		{"duration", minimal + "datapath: {reassembly_timeout: 10}\n", []string{"duration"}},
		{"metrics", minimal + "metrics: {listen: localhost}\n", []string{"metrics.listen"}},
		{"socket-relative", minimal + "control: {socket: x.sock}\n", []string{"control.socket", "absolute"}},
		{"capture-same", minimal + "capture: {host: /tmp/x.pcap, wire: /tmp/x.pcap}\n", []string{"capture.wire"}},
		{"sa-no-name", minimal + "sas: [{dir: out, esp: {spi: 0x1001, enc: aes-gcm-128, enc_key: '0x000102030405060708090a0b0c0d0e0f10111213'}}]\n",
			[]string{"sas[0].name: is missing"}},
		{"sa-dup-name", minimal + "sas:\n" +
			"  - {name: x, dir: out, esp: {spi: 0x1001, enc: aes-gcm-128, enc_key: '0x000102030405060708090a0b0c0d0e0f10111213'}}\n" +
			"  - {name: x, dir: in, esp: {spi: 0x1002, enc: aes-gcm-128, enc_key: '0x000102030405060708090a0b0c0d0e0f10111213'}}\n",
			[]string{"sas[1].name", "twice"}},
		{"sa-bad-enc", minimal + "sas: [{name: x, dir: out, esp: {spi: 0x1001, enc: rot13, enc_key: '0x00'}}]\n", []string{"sas[0].esp", "rot13"}},
		{"sa-bad-key-len", minimal + "sas: [{name: x, dir: out, esp: {spi: 0x1001, enc: aes-gcm-128, enc_key: '0x0001'}}]\n", []string{"sas[0]", "key"}},
		{"sa-redacted", minimal + "sas: [{name: x, dir: out, esp: {spi: 0x1001, enc: aes-gcm-128, keys_redacted: true}}]\n", []string{"keys_redacted"}},
		{"policy-no-name", minimal + "policies: [{dir: out, action: bypass}]\n", []string{"policies[0].name: is missing"}},
		{"policy-unknown-bundle", minimal + "policies: [{name: p, dir: out, bundles: [ghost]}]\n", []string{"policies[0].bundles[0]", "ghost"}},
		{"policy-bad-action", minimal + "policies: [{name: p, dir: out, action: allow-maybe}]\n", []string{"policies[0]", "action"}},
		{"several", "wire: {type: memory}\nlog_level: x\n", []string{"2 problems", "wire.cable", "log_level"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConfigError: %v", err, err)
			}
			if !errors.Is(err, saspec.ErrInvalid) {
				t.Errorf("errors.Is(err, sa.ErrInvalid) is false")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestExampleConfig keeps docs/config-example.yaml valid.
func TestExampleConfig(t *testing.T) {
	// Installed as the docs say: a copy readable by its owner only.
	data, err := os.ReadFile("../docs/config-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "secnic.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Wire.Type != WireUDP || len(c.SAs) == 0 || len(c.Policies) == 0 || c.Metrics.Listen == "" {
		t.Errorf("the example lost sections: %+v", c)
	}
	if _, err := LoadConfig("../docs/no-such-file.yaml"); err == nil || !os.IsNotExist(errors.Unwrap(err)) {
		t.Errorf("missing file: %v", err)
	}
}

func TestMTUJSON(t *testing.T) {
	tests := []struct {
		in   string
		want MTU
		ok   bool
	}{
		{`"auto"`, 0, true}, {`"AUTO"`, 0, true}, {`1400`, 1400, true}, {`"1400"`, 1400, true}, {`""`, 0, true},
		{`"big"`, 0, false}, {`true`, 0, false}, {`1.5`, 0, false},
	}
	for _, tc := range tests {
		var m MTU
		err := m.UnmarshalJSON([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && m != tc.want) {
			t.Errorf("%s: got %d, %v", tc.in, m, err)
		}
		if tc.ok {
			b, _ := m.MarshalJSON()
			var back MTU
			if err := back.UnmarshalJSON(b); err != nil || back != m {
				t.Errorf("%s: round trip %s -> %d, %v", tc.in, b, back, err)
			}
		}
	}
}

package daemon

import (
	"os"
	"testing"
)

// FuzzParseConfig feeds arbitrary bytes to the configuration parser: it
// must never panic, and what it accepts must validate again.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + sasAndPolicies))
	f.Add([]byte(`{"wire": {"type": "udp", "local": "[::1]:1", "peer": "[::1]:2"}, "host": {"mtu": "auto"}}`))
	if b, err := os.ReadFile("../docs/config-example.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if c != nil {
				t.Fatal("a config and an error")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted, then invalid: %v", err)
		}
	})
}

package capabilities

import (
	"errors"
	"strings"
	"testing"
)

func TestOffloadMode(t *testing.T) {
	gcm := BundleRequest{Protocols: ProtocolESP, Mode: ModeTransport, Encryption: EncAESGCM128, Integrity: IntegNone}
	with := func(o OffloadMode) BundleRequest { r := gcm; r.Offload = o; return r }
	full, err := NewManagerFromConfig(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if full.OffloadMode() != OffloadPacket {
		t.Fatalf("full profile default mode %q, want packet", full.OffloadMode())
	}
	ixgbe, err := NewManagerFromConfig(Config{Profile: ProfileIxgbe})
	if err != nil {
		t.Fatal(err)
	}
	if ixgbe.OffloadMode() != OffloadCrypto {
		t.Fatalf("ixgbe default mode %q, want crypto (no packet offload in its hardware)", ixgbe.OffloadMode())
	}
	mismatch := func(t *testing.T, err error) {
		t.Helper()
		var e *Error
		if !errors.As(err, &e) || e.Kind != ErrInvalid || e.Field != "offload" || !strings.Contains(err.Error(), "does not match this NIC") {
			t.Fatalf("got %v, want an invalid offload field error", err)
		}
	}
	for _, o := range []OffloadMode{"", OffloadPacket} {
		if err := full.Check(with(o)); err != nil {
			t.Errorf("packet NIC, offload %q: %v", o, err)
		}
	}
	mismatch(t, full.Check(with(OffloadCrypto)))

	if err := full.SetOffloadMode(OffloadCrypto); err != nil {
		t.Fatal(err)
	}
	for _, o := range []OffloadMode{"", OffloadCrypto} {
		if err := full.Check(with(o)); err != nil {
			t.Errorf("crypto NIC, offload %q: %v", o, err)
		}
	}
	mismatch(t, full.Check(with(OffloadPacket)))
	legacy := gcm
	legacy.PacketOffload = true
	mismatch(t, full.Check(legacy))

	// A card without packet offload says so rather than "mismatch".
	if err := ixgbe.SetOffloadMode(OffloadPacket); err != nil {
		t.Fatal(err)
	}
	if err := ixgbe.Check(gcm); !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "packet offload") {
		t.Errorf("ixgbe in packet mode: %v, want packet offload not supported", err)
	}
	if err := ixgbe.SetOffloadMode("both"); !errors.Is(err, ErrInvalid) {
		t.Errorf("mode both: %v", err)
	}
	if _, err := ParseOffloadMode("Crypto"); err == nil {
		t.Error("ParseOffloadMode accepted a mode with a capital letter")
	}
}

package capabilities

import (
	"sync"
	"testing"
)

// TestCurrentConfigIndications runs every kind of change on a fresh full
// Manager and checks: the reported change, the state afterwards, and exactly
// one current-config indication carrying the new record (none on no-op or
// error).
func TestCurrentConfigIndications(t *testing.T) {
	tests := []struct {
		name        string
		config      Config
		op          func(m *Manager) (bool, error)
		wantChanged bool
		wantErr     error
		wantText    string
		check       func(t *testing.T, cur Record)
	}{
		{name: "offload parameters", op: func(m *Manager) (bool, error) {
			return m.SetOffloadParameters(OffloadParameters{IPsecV2: IPsecV2ESPEnabled})
		}, wantChanged: true, check: func(t *testing.T, cur Record) {
			if cur.Ah || !cur.Esp {
				t.Errorf("Ah=%v Esp=%v", cur.Ah, cur.Esp)
			}
		}},
		{name: "offload parameters no change", op: func(m *Manager) (bool, error) {
			return m.SetOffloadParameters(OffloadParameters{})
		}},
		{name: "feature off", op: func(m *Manager) (bool, error) { return m.SetFeature(FeatureTunnel, false) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if cur.Tunnel || cur.TransportTunnelCombined || cur.UdpEsp != UDPESPTransport {
					t.Errorf("tunnel off left dependents: %+v", cur)
				}
			}},
		{name: "feature already on", op: func(m *Manager) (bool, error) { return m.SetFeature(FeatureTunnel, true) }},
		{name: "esp off clears ah_esp_combined", op: func(m *Manager) (bool, error) { return m.SetFeature(FeatureEsp, false) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if cur.Esp || cur.AhEspCombined || !cur.Ah {
					t.Errorf("got Ah=%v Esp=%v AhEspCombined=%v", cur.Ah, cur.Esp, cur.AhEspCombined)
				}
			}},
		{name: "unknown feature", op: func(m *Manager) (bool, error) { return m.SetFeature("turbo", true) },
			wantErr: ErrInvalid, wantText: "known features: ipv6_supported"},
		{name: "feature not in hardware", op: func(m *Manager) (bool, error) { return m.SetFeature(FeatureLsoSupported, true) },
			wantErr: ErrNotSupported, wantText: "feature lso_supported is not supported by the hardware"},
		{name: "feature missing prerequisite", config: Config{Current: Overrides{Esp: ptr(false), AhEspCombined: ptr(false)}},
			op:      func(m *Manager) (bool, error) { return m.SetFeature(FeatureAhEspCombined, true) },
			wantErr: ErrInvalid, wantText: "requires esp"},
		{name: "legacy on", op: func(m *Manager) (bool, error) { return m.SetFeature(FeatureLegacyAlgorithms, true) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if !cur.Limits.LegacyAlgorithms || cur.EncryptionAlgorithms&legacyEncr != 0 {
					t.Errorf("legacy on: %+v", cur)
				}
			}},
		{name: "legacy off clears legacy bits", config: Config{Current: Overrides{
			Limits: &LimitOverrides{LegacyAlgorithms: ptr(true)}, EncryptionAlgorithms: ptr(allEncr), AuthenticationAlgorithms: ptr(allAuth)}},
			op:          func(m *Manager) (bool, error) { return m.SetFeature(FeatureLegacyAlgorithms, false) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if cur.EncryptionAlgorithms != allEncr&^legacyEncr || cur.AuthenticationAlgorithms != allAuth&^legacyAuth {
					t.Errorf("legacy off left %v %v", cur.EncryptionAlgorithms, cur.AuthenticationAlgorithms)
				}
			}},
		{name: "encryption off", op: func(m *Manager) (bool, error) { return m.SetEncryption(EncAESCBC128, false) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if cur.EncryptionAlgorithms.Has(EncrAESCBC128) {
					t.Error("aes-cbc-128 still on")
				}
			}},
		{name: "encryption already on", op: func(m *Manager) (bool, error) { return m.SetEncryption(EncAESGCM256, true) }},
		{name: "extension encryption off", op: func(m *Manager) (bool, error) { return m.SetEncryption(EncChaCha20Poly1305, false) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if cur.Extensions.Encryption.Has(ExtChaCha20Poly1305) {
					t.Error("chacha20-poly1305 still on")
				}
			}},
		{name: "ESP GMAC off clears the NDIS auth bit", op: func(m *Manager) (bool, error) { return m.SetEncryption(EncAESGMAC192, false) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if cur.AuthenticationAlgorithms.Has(AuthAESGCM192) || !cur.EncryptionAlgorithms.Has(EncrNone) {
					t.Errorf("auth %v encr %v", cur.AuthenticationAlgorithms, cur.EncryptionAlgorithms)
				}
			}},
		{name: "ESP GMAC on sets AUTH_AES_GCM and ENCR_NONE",
			config: Config{Current: Overrides{AuthenticationAlgorithms: ptr(AuthSHA256), EncryptionAlgorithms: ptr(EncrAESGCM128)}},
			op:     func(m *Manager) (bool, error) { return m.SetEncryption(EncAESGMAC256, true) }, wantChanged: true,
			check: func(t *testing.T, cur Record) {
				if cur.AuthenticationAlgorithms != AuthSHA256|AuthAESGCM256 || cur.EncryptionAlgorithms != EncrAESGCM128|EncrNone {
					t.Errorf("auth %v encr %v", cur.AuthenticationAlgorithms, cur.EncryptionAlgorithms)
				}
			}},
		{name: "GCM on restores ICV lengths",
			config: Config{Current: Overrides{EncryptionAlgorithms: ptr(EncrAESCBC128), Extensions: &ExtensionOverrides{GCMICVLengths: ptr(ICVLengths(0))}}},
			op:     func(m *Manager) (bool, error) { return m.SetEncryption(EncAESGCM128, true) }, wantChanged: true,
			check: func(t *testing.T, cur Record) {
				if cur.Extensions.GCMICVLengths != ICV8|ICV12|ICV16 {
					t.Errorf("ICV lengths %v", cur.Extensions.GCMICVLengths)
				}
			}},
		{name: "legacy encryption needs legacy switch", op: func(m *Manager) (bool, error) { return m.SetEncryption(EncDESCBC, true) },
			wantErr: ErrDisabled, wantText: "switch on the feature legacy_algorithms first"},
		{name: "legacy encryption with switch", config: Config{Current: Overrides{Limits: &LimitOverrides{LegacyAlgorithms: ptr(true)}}},
			op: func(m *Manager) (bool, error) { return m.SetEncryption(Enc3DESCBC, true) }, wantChanged: true,
			check: func(t *testing.T, cur Record) {
				if !cur.EncryptionAlgorithms.Has(Encr3DESCBC) {
					t.Error("3des-cbc not on")
				}
			}},
		{name: "encryption not in hardware", config: Config{Profile: ProfileIxgbe},
			op:      func(m *Manager) (bool, error) { return m.SetEncryption(EncAESCBC128, true) },
			wantErr: ErrNotSupported, wantText: `encryption "aes-cbc-128" is not supported by the hardware`},
		{name: "unknown encryption", op: func(m *Manager) (bool, error) { return m.SetEncryption("rot13", true) },
			wantErr: ErrInvalid, wantText: "known encryption algorithms"},
		{name: "integrity off", op: func(m *Manager) (bool, error) { return m.SetIntegrity(IntegHMACSHA512256, false) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if cur.Extensions.Integrity.Has(ExtHMACSHA512256) {
					t.Error("hmac-sha512-256 still on")
				}
			}},
		{name: "legacy integrity", op: func(m *Manager) (bool, error) { return m.SetIntegrity(IntegHMACMD596, true) },
			wantErr: ErrDisabled, wantText: "legacy"},
		{name: "integrity not in hardware", config: Config{Profile: ProfileNetdevsim},
			op:      func(m *Manager) (bool, error) { return m.SetIntegrity(IntegHMACSHA256128, true) },
			wantErr: ErrNotSupported, wantText: `integrity "hmac-sha256-128" is not supported by the hardware (the hardware profile "netdevsim"`},
		{name: "integrity on", config: Config{Current: Overrides{AuthenticationAlgorithms: ptr(AuthSHA1)}},
			op: func(m *Manager) (bool, error) { return m.SetIntegrity(IntegHMACSHA256128, true) }, wantChanged: true,
			check: func(t *testing.T, cur Record) {
				if cur.AuthenticationAlgorithms != AuthSHA1|AuthSHA256 {
					t.Errorf("auth %v", cur.AuthenticationAlgorithms)
				}
			}},
		{name: "integrity none", op: func(m *Manager) (bool, error) { return m.SetIntegrity(IntegNone, false) },
			wantErr: ErrInvalid, wantText: "cannot be switched"},
		{name: "set current", op: func(m *Manager) (bool, error) {
			r := m.Current()
			r.SaOffloadCapacity = 10
			return m.SetCurrent(r)
		}, wantChanged: true, check: func(t *testing.T, cur Record) {
			if cur.SaOffloadCapacity != 10 {
				t.Errorf("capacity %d", cur.SaOffloadCapacity)
			}
		}},
		{name: "set current unchanged", op: func(m *Manager) (bool, error) { return m.SetCurrent(m.Current()) }},
		{name: "set current beyond hardware", op: func(m *Manager) (bool, error) {
			r := m.Current()
			r.SaOffloadCapacity = 5000
			return m.SetCurrent(r)
		}, wantErr: ErrNotSupported, wantText: "sa_offload_capacity 5000 > 4096"},
		{name: "set current invalid", op: func(m *Manager) (bool, error) {
			r := m.Current()
			r.Transport, r.Tunnel = false, false
			return m.SetCurrent(r)
		}, wantErr: ErrInvalid, wantText: "transport or tunnel must be on"},
		{name: "update current", op: func(m *Manager) (bool, error) {
			return m.UpdateCurrent(Overrides{Limits: &LimitOverrides{MaxReplayWindow: ptr(uint32(64))}})
		}, wantChanged: true, check: func(t *testing.T, cur Record) {
			if cur.Limits.MaxReplayWindow != 64 {
				t.Errorf("window %d", cur.Limits.MaxReplayWindow)
			}
		}},
		{name: "update current beyond hardware", config: Config{Profile: ProfileMlx5},
			op:      func(m *Manager) (bool, error) { return m.UpdateCurrent(Overrides{Ah: ptr(true)}) },
			wantErr: ErrNotSupported, wantText: "exceeds the hardware capabilities: ah"},
		{name: "linux esp off", op: func(m *Manager) (bool, error) { return m.SetLinuxFeature(EthtoolESPHWOffload, false) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if cur.Esp || !cur.Ah {
					t.Errorf("Esp=%v Ah=%v", cur.Esp, cur.Ah)
				}
			}},
		{name: "linux csum off", op: func(m *Manager) (bool, error) { return m.SetLinuxFeature(EthtoolESPTxCsumHWOffload, false) },
			wantChanged: true, check: func(t *testing.T, cur Record) {
				if cur.OffloadFlags != 0 {
					t.Errorf("flags %v", cur.OffloadFlags)
				}
			}},
		{name: "linux csum on without esp", config: Config{Current: Overrides{Esp: ptr(false), AhEspCombined: ptr(false)}},
			op:      func(m *Manager) (bool, error) { return m.SetLinuxFeature(EthtoolESPTxCsumHWOffload, true) },
			wantErr: ErrInvalid, wantText: "requires esp-hw-offload"},
		{name: "linux gso on is fixed off", op: func(m *Manager) (bool, error) { return m.SetLinuxFeature(EthtoolTxESPSegmentation, true) },
			wantErr: ErrNotSupported, wantText: "[fixed] off"},
		{name: "linux unknown", op: func(m *Manager) (bool, error) { return m.SetLinuxFeature("rx-gro", true) },
			wantErr: ErrInvalid, wantText: "not an IPsec feature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustManager(t, tt.config)
			before := m.Current()
			sub := m.Subscribe(8)
			defer sub.Unsubscribe()

			changed, err := tt.op(m)
			checkErr(t, err, tt.wantErr, tt.wantText)
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			cur := m.Current()
			inds := drain(sub)
			if tt.wantChanged {
				if len(inds) != 1 {
					t.Fatalf("got %d indications, want 1", len(inds))
				}
				ind := inds[0]
				if ind.Status != StatusTaskOffloadCurrentConfig || ind.Name != "NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG" || ind.Record != cur {
					t.Errorf("indication = %+v, want current config %+v", ind, cur)
				}
				if cur == before {
					t.Error("reported a change but the record is the same")
				}
			} else {
				if len(inds) != 0 {
					t.Errorf("got %d indications, want none", len(inds))
				}
				if cur != before {
					t.Errorf("record changed without report")
				}
			}
			if err := cur.Validate(); err != nil {
				t.Errorf("current config invalid afterwards: %v", err)
			}
			if err := cur.Within(m.Hardware()); err != nil {
				t.Errorf("current config exceeds hardware afterwards: %v", err)
			}
			if tt.check != nil {
				tt.check(t, cur)
			}
		})
	}
}

func TestSetHardware(t *testing.T) {
	full := mustProfile(t, ProfileFull)
	ixgbe := mustProfile(t, ProfileIxgbe)
	smaller := full
	smaller.SaOffloadCapacity = 100
	bigger := full
	bigger.LsoSupported = true
	noGCMIcv16 := full
	noGCMIcv16.Extensions.GCMICVLengths = ICV8

	tests := []struct {
		name        string
		start       Config
		hw          Record
		wantChanged bool
		wantErr     error
		wantStatus  []StatusCode
		wantCur     func(hw Record) Record // nil: current unchanged
	}{
		{name: "same hardware", hw: full},
		{name: "grows", hw: bigger, wantChanged: true,
			wantStatus: []StatusCode{StatusTaskOffloadHardwareCapabilities}},
		{name: "shrinks capacity", hw: smaller, wantChanged: true,
			wantStatus: []StatusCode{StatusTaskOffloadHardwareCapabilities, StatusTaskOffloadCurrentConfig},
			wantCur:    func(hw Record) Record { c := DefaultConfig(full); c.SaOffloadCapacity = 100; return c }},
		{name: "becomes ixgbe", hw: ixgbe, wantChanged: true,
			wantStatus: []StatusCode{StatusTaskOffloadHardwareCapabilities, StatusTaskOffloadCurrentConfig},
			wantCur:    func(hw Record) Record { return DefaultConfig(ixgbe) }},
		{name: "clamped config invalid falls back to default",
			start: Config{Current: Overrides{Extensions: &ExtensionOverrides{GCMICVLengths: ptr(ICV16)}}},
			hw:    noGCMIcv16, wantChanged: true,
			wantStatus: []StatusCode{StatusTaskOffloadHardwareCapabilities, StatusTaskOffloadCurrentConfig},
			wantCur:    func(hw Record) Record { return DefaultConfig(noGCMIcv16) }},
		{name: "invalid hardware", hw: Record{Esp: true}, wantErr: ErrInvalid},
		{name: "hardware esp without algorithms", hw: func() Record {
			r := ixgbe
			r.EncryptionAlgorithms = 0
			return r
		}(), wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustManager(t, tt.start)
			before := m.Current()
			hwBefore := m.Hardware()
			sub := m.Subscribe(8)
			defer sub.Unsubscribe()

			changed, err := m.SetHardware(tt.hw)
			checkErr(t, err, tt.wantErr)
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			inds := drain(sub)
			if len(inds) != len(tt.wantStatus) {
				t.Fatalf("got %d indications, want %d", len(inds), len(tt.wantStatus))
			}
			hw, cur := m.Snapshot()
			for i, ind := range inds {
				if ind.Status != tt.wantStatus[i] {
					t.Errorf("indication %d status = %v, want %v", i, ind.Status, tt.wantStatus[i])
				}
				want := cur
				if ind.Status == StatusTaskOffloadHardwareCapabilities {
					want = hw
				}
				if ind.Record != want {
					t.Errorf("indication %d record = %+v, want %+v", i, ind.Record, want)
				}
				if i > 0 && ind.Seq != inds[i-1].Seq+1 {
					t.Errorf("indication %d seq %d after %d", i, ind.Seq, inds[i-1].Seq)
				}
			}
			if tt.wantErr != nil && hw != hwBefore {
				t.Error("hardware changed on error")
			}
			if tt.wantCur == nil {
				if cur != before {
					t.Errorf("current changed: %+v", cur)
				}
			} else if want := tt.wantCur(hw); cur != want {
				t.Errorf("current = %+v\nwant %+v", cur, want)
			}
			if err := cur.Within(hw); err != nil {
				t.Errorf("current exceeds hardware: %v", err)
			}
		})
	}
}

func TestNewManager(t *testing.T) {
	full := mustProfile(t, ProfileFull)
	ixgbe := mustProfile(t, ProfileIxgbe)
	tests := []struct {
		name    string
		hw, cur Record
		wantErr error
	}{
		{"default", full, DefaultConfig(full), nil},
		{"current equals hardware", full, full, nil},
		{"current exceeds hardware", ixgbe, DefaultConfig(full), ErrNotSupported},
		{"current invalid", full, Record{Esp: true}, ErrInvalid},
		{"hardware invalid", Record{Ah: true}, Record{}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewManager(tt.hw, tt.cur)
			checkErr(t, err, tt.wantErr)
			if err == nil && (m.Hardware() != tt.hw || m.Current() != tt.cur || m.Profile() != "") {
				t.Error("records not kept")
			}
		})
	}
	m := mustManager(t, Config{Profile: ProfileMlx5})
	if m.Profile() != ProfileMlx5 {
		t.Errorf("Profile() = %q", m.Profile())
	}
	if m := mustManager(t, Config{}); m.Profile() != ProfileFull {
		t.Errorf("default Profile() = %q", m.Profile())
	}
}

func TestSubscriptionDropOldest(t *testing.T) {
	m := mustManager(t, Config{})
	sub := m.Subscribe(2)
	defer sub.Unsubscribe()
	other := m.Subscribe(0) // default buffer
	defer other.Unsubscribe()

	steps := []IPsecV2Setting{IPsecV2Disabled, IPsecV2AHEnabled, IPsecV2ESPEnabled, IPsecV2AHAndESPEnabled, IPsecV2Disabled}
	for _, s := range steps {
		if changed, err := m.SetOffloadParameters(OffloadParameters{IPsecV2: s}); err != nil || !changed {
			t.Fatalf("SetOffloadParameters(%v) = %v, %v", s, changed, err)
		}
	}
	inds := drain(sub)
	if len(inds) != 2 {
		t.Fatalf("got %d indications, want the newest 2", len(inds))
	}
	if inds[0].Seq != 4 || inds[1].Seq != 5 {
		t.Errorf("seqs = %d, %d; want 4, 5", inds[0].Seq, inds[1].Seq)
	}
	if inds[1].Record != m.Current() {
		t.Error("last indication is not the current record")
	}
	if got := sub.Dropped(); got != 3 {
		t.Errorf("Dropped() = %d, want 3", got)
	}
	if got := len(drain(other)); got != len(steps) || other.Dropped() != 0 {
		t.Errorf("default-buffer subscriber got %d, dropped %d", got, other.Dropped())
	}
}

func TestUnsubscribe(t *testing.T) {
	m := mustManager(t, Config{})
	sub := m.Subscribe(4)
	stay := m.Subscribe(4)
	defer stay.Unsubscribe()
	sub.Unsubscribe()
	sub.Unsubscribe() // idempotent
	if _, err := m.SetFeature(FeatureTunnel, false); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-sub.C; ok {
		t.Error("unsubscribed channel delivered an indication")
	}
	if got := len(drain(stay)); got != 1 {
		t.Errorf("remaining subscriber got %d indications, want 1", got)
	}
}

// TestConcurrentUse exercises the Manager from several goroutines (run with
// -race); every indication a reader sees must be a valid record and arrive
// in sequence order.
func TestConcurrentUse(t *testing.T) {
	m := mustManager(t, Config{})
	sub := m.Subscribe(1024)
	var wg sync.WaitGroup
	var seqErr error
	var readerWG sync.WaitGroup
	readerWG.Add(1)
	go func() {
		defer readerWG.Done()
		var last uint64
		for ind := range sub.C {
			if ind.Seq <= last {
				seqErr = &Error{Kind: ErrInvalid, Subject: "seq", Problem: "went backwards"}
			}
			last = ind.Seq
			if err := ind.Record.Validate(); err != nil {
				seqErr = err
			}
		}
	}()
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				on := (i+g)%2 == 0
				_, _ = m.SetFeature(FeatureTunnel, on)
				_, _ = m.SetEncryption(EncAESCBC192, !on)
				_, _ = m.SetOffloadParameters(OffloadParameters{IPsecV2: IPsecV2Setting(1 + (i+g)%4)})
				_ = m.Check(BundleRequest{Protocols: ProtocolESP, Mode: ModeTransport, Encryption: EncAESGCM128})
				_ = m.LinuxView()
				_ = m.Setting()
			}
		}()
	}
	wg.Wait()
	sub.Unsubscribe()
	readerWG.Wait()
	if seqErr != nil {
		t.Fatal(seqErr)
	}
	if err := m.Current().Within(m.Hardware()); err != nil {
		t.Fatal(err)
	}
}

package capabilities

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// StatusCode is an NDIS status indication code.
type StatusCode uint32

// Status indications a Manager emits.
const (
	// StatusTaskOffloadCurrentConfig: the current configuration changed.
	StatusTaskOffloadCurrentConfig StatusCode = 0x40020006
	// StatusTaskOffloadHardwareCapabilities: the hardware capabilities changed.
	StatusTaskOffloadHardwareCapabilities StatusCode = 0x40020007
)

// String returns the NDIS name of the code.
func (s StatusCode) String() string {
	switch s {
	case StatusTaskOffloadCurrentConfig:
		return "NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG"
	case StatusTaskOffloadHardwareCapabilities:
		return "NDIS_STATUS_TASK_OFFLOAD_HARDWARE_CAPABILITIES"
	}
	return fmt.Sprintf("NDIS_STATUS(0x%08x)", uint32(s))
}

// Indication is one status indication: the new record after a change.
type Indication struct {
	// Status says which record changed.
	Status StatusCode `json:"status"`
	// Name is Status.String(), for readers of the JSON.
	Name string `json:"name"`
	// Seq numbers indications of one Manager from 1, in the order they were
	// emitted; a gap seen by a subscriber means it dropped some.
	Seq uint64 `json:"seq"`
	// Record is the new hardware record or current configuration.
	Record Record `json:"record"`
}

// Manager keeps the hardware capabilities and the current configuration of
// one card, applies changes, and sends an [Indication] to subscribers for
// every change. It is safe for concurrent use.
type Manager struct {
	mu      sync.Mutex
	profile string
	hw, cur Record
	mode    OffloadMode
	seq     uint64
	subs    map[*Subscription]struct{}
}

// NewManager returns a Manager with hardware capabilities hw and current
// configuration cur, which must be valid and within hw.
func NewManager(hw, cur Record) (*Manager, error) {
	if err := hw.ValidateHardware(); err != nil {
		return nil, err
	}
	if err := cur.Validate(); err != nil {
		return nil, err
	}
	if err := cur.Within(hw); err != nil {
		return nil, err
	}
	return &Manager{hw: hw, cur: cur, mode: defaultMode(hw), subs: map[*Subscription]struct{}{}}, nil
}

// NewManagerFromConfig builds the records with [Config.Build] and returns a
// Manager for them.
func NewManagerFromConfig(c Config) (*Manager, error) {
	hw, cur, err := c.Build()
	if err != nil {
		return nil, err
	}
	m, err := NewManager(hw, cur)
	if err != nil {
		return nil, err
	}
	m.profile = c.Profile
	if m.profile == "" {
		m.profile = DefaultProfile
	}
	return m, nil
}

// Profile returns the profile name the Manager was built from, or "".
func (m *Manager) Profile() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.profile
}

// Hardware returns the hardware capabilities
// (OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES).
func (m *Manager) Hardware() Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hw
}

// Current returns the current configuration (OID_TCP_OFFLOAD_CURRENT_CONFIG).
func (m *Manager) Current() Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// Snapshot returns both records, taken together.
func (m *Manager) Snapshot() (hw, cur Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hw, m.cur
}

// Setting returns the NDIS_OFFLOAD_PARAMETERS value that describes which
// protocols are on now.
func (m *Manager) Setting() IPsecV2Setting {
	cur := m.Current()
	return SettingFor(cur.Ah, cur.Esp)
}

// SetOffloadParameters applies NDIS_OFFLOAD_PARAMETERS (see
// [OffloadParameters] for which member counts). NO_CHANGE, or a setting equal
// to the current one, changes nothing and emits nothing. Otherwise Ah and Esp
// are set as asked and AhEspCombined follows: on when both protocols are on
// and the hardware has it, off otherwise. Invalid values, and protocols the
// hardware lacks, are refused with no change. All other fields (algorithms,
// modes, UDP-ESP types) are kept, so switching a protocol back on restores
// them. It reports whether the configuration changed.
func (m *Manager) SetOffloadParameters(p OffloadParameters) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := p.effective(m.hw.IPv6Supported)
	if err != nil {
		return false, err
	}
	if s == IPsecV2NoChange {
		return false, nil
	}
	ah, esp := s.Protocols()
	if ah && !m.hw.Ah {
		return false, m.notInHardware("AH offload (IPsecV2 = "+s.String()+")", "use ESP_ENABLED")
	}
	if esp && !m.hw.Esp {
		return false, m.notInHardware("ESP offload (IPsecV2 = "+s.String()+")", "use AH_ENABLED")
	}
	if m.cur.Ah == ah && m.cur.Esp == esp {
		return false, nil
	}
	next := m.cur
	next.Ah, next.Esp = ah, esp
	next.AhEspCombined = ah && esp && m.hw.AhEspCombined
	return m.commitLocked(next)
}

// SetCurrent replaces the current configuration. r must be valid and within
// the hardware.
func (m *Manager) SetCurrent(r Record) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.commitLocked(r)
}

// UpdateCurrent applies overrides to the current configuration.
func (m *Manager) UpdateCurrent(o Overrides) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, err := m.cur.Apply(o)
	if err != nil {
		return false, err
	}
	return m.commitLocked(next)
}

// update runs fn on a copy of the current configuration and commits the
// result.
func (m *Manager) update(fn func(hw *Record, next *Record) error) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := m.cur
	if err := fn(&m.hw, &next); err != nil {
		return false, err
	}
	return m.commitLocked(next)
}

// SetFeature switches one feature of the current configuration (names:
// [FeatureNames]). Switching a feature on needs it in the hardware and its
// prerequisites on (e.g. ah_esp_combined needs ah and esp). Switching one
// off also switches off what depends on it (esp off clears
// ah_esp_combined; legacy_algorithms off clears DES, 3DES and MD5).
func (m *Manager) SetFeature(name string, on bool) (bool, error) {
	f, ok := lookupFeature(name)
	if !ok {
		return false, invalid(fmt.Sprintf("feature %q", name), "is unknown",
			"known features: "+strings.Join(FeatureNames(), ", "))
	}
	return m.update(func(hw, next *Record) error { return m.applyFeature(hw, next, f, on) })
}

func (m *Manager) applyFeature(hw, next *Record, f feature, on bool) error {
	if !on {
		f.set(next, false)
		next.clearDependents()
		return nil
	}
	if !f.get(hw) {
		return m.notInHardware("feature "+f.name, "")
	}
	if missing := f.missing(next); len(missing) > 0 {
		return invalid("feature "+f.name, "requires "+strings.Join(missing, " and "),
			"switch on "+strings.Join(missing, " and ")+" first")
	}
	f.set(next, true)
	return nil
}

// SetEncryption switches one ESP encryption algorithm (canonical name) in the
// current configuration.
//
// ESP AES-GMAC ("aes-gmac-N") is AUTHENTICATION_AES_GCM_N + ENCRYPTION_NONE
// in NDIS: switching it on sets both bits (so "null" becomes available too);
// switching it off clears AUTHENTICATION_AES_GCM_N, which also switches off
// AH with integrity "aes-gmac-N". Switching on an AES-GCM algorithm when no
// ICV length is enabled enables the hardware's ICV lengths.
// Legacy algorithms need the feature legacy_algorithms on first.
func (m *Manager) SetEncryption(name string, on bool) (bool, error) {
	a, ok := lookupEnc(name)
	if !ok {
		return false, invalid(fmt.Sprintf("encryption %q", name), "is unknown",
			"known encryption algorithms: "+strings.Join(EncryptionNames(), ", "))
	}
	subject := fmt.Sprintf("encryption %q", name)
	return m.update(func(hw, next *Record) error {
		if on {
			if !hw.hasEnc(a) || !hw.legacyOK(a.legacy) {
				return m.notInHardware(subject, "")
			}
			if a.legacy && !next.Limits.LegacyAlgorithms {
				return legacyOff(subject, legacyHintSet)
			}
		}
		switch {
		case a.ndis != 0:
			next.EncryptionAlgorithms = setBit(next.EncryptionAlgorithms, a.ndis, on)
		case a.gmacAuth != 0:
			next.AuthenticationAlgorithms = setBit(next.AuthenticationAlgorithms, a.gmacAuth, on)
			if on {
				next.EncryptionAlgorithms |= EncrNone
			}
		default:
			next.Extensions.Encryption = setBit(next.Extensions.Encryption, a.ext, on)
		}
		if on && a.gcm && next.Extensions.GCMICVLengths == 0 {
			next.Extensions.GCMICVLengths = hw.Extensions.GCMICVLengths
		}
		return nil
	})
}

// SetIntegrity switches one integrity algorithm (canonical name, not "none")
// in the current configuration. "aes-gmac-N" is the NDIS bit
// AUTHENTICATION_AES_GCM_N, used by AH GMAC and (with ENCRYPTION_NONE) by
// ESP GMAC alike. Legacy algorithms need the feature legacy_algorithms on
// first.
func (m *Manager) SetIntegrity(name string, on bool) (bool, error) {
	a, ok := lookupInteg(name)
	if !ok || a.name == IntegNone {
		return false, invalid(fmt.Sprintf("integrity %q", name), "cannot be switched",
			"known integrity algorithms: "+strings.Join(IntegrityNames()[1:], ", "))
	}
	subject := fmt.Sprintf("integrity %q", name)
	return m.update(func(hw, next *Record) error {
		if on {
			if !hw.hasInteg(a) || !hw.legacyOK(a.legacy) {
				return m.notInHardware(subject, "")
			}
			if a.legacy && !next.Limits.LegacyAlgorithms {
				return legacyOff(subject, legacyHintSet)
			}
		}
		if a.ndis != 0 {
			next.AuthenticationAlgorithms = setBit(next.AuthenticationAlgorithms, a.ndis, on)
		} else {
			next.Extensions.Integrity = setBit(next.Extensions.Integrity, a.ext, on)
		}
		return nil
	})
}

func setBit[M ~uint32](m, bit M, on bool) M {
	if on {
		return m | bit
	}
	return m &^ bit
}

func legacyOff(subject, hint string) error {
	return &Error{
		Kind:    ErrDisabled,
		Subject: subject,
		Problem: "is a legacy algorithm and legacy algorithms are not allowed in the current configuration",
		Hint:    hint,
	}
}

const (
	legacyHintSet   = "switch on the feature legacy_algorithms first"
	legacyHintCheck = "switch on the feature legacy_algorithms and enable the algorithm in the current offload configuration"
)

// SetHardware replaces the hardware capabilities, as when the card behind
// the emulation changes. It emits a hardware-capabilities indication; if the
// current configuration no longer fits, it is reduced to the new hardware
// (or, if that reduction is not a valid record, reset to [DefaultConfig])
// and a current-config indication follows.
func (m *Manager) SetHardware(hw Record) (bool, error) {
	if err := hw.ValidateHardware(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if hw == m.hw {
		return false, nil
	}
	cur := m.cur
	if cur.Within(hw) != nil {
		cur = cur.clampTo(hw)
		if cur.Validate() != nil || cur.Within(hw) != nil {
			cur = DefaultConfig(hw)
		}
	}
	m.hw = hw
	m.emitLocked(StatusTaskOffloadHardwareCapabilities, hw)
	if cur != m.cur {
		m.cur = cur
		m.emitLocked(StatusTaskOffloadCurrentConfig, cur)
	}
	return true, nil
}

// commitLocked makes next the current configuration if it is valid, within
// the hardware and different; it emits the indication.
func (m *Manager) commitLocked(next Record) (bool, error) {
	if err := next.Validate(); err != nil {
		return false, err
	}
	if err := next.Within(m.hw); err != nil {
		return false, err
	}
	if next == m.cur {
		return false, nil
	}
	m.cur = next
	m.emitLocked(StatusTaskOffloadCurrentConfig, next)
	return true, nil
}

func (m *Manager) notInHardware(subject, hint string) error {
	return notInHardware(m.profile, subject, hint)
}

func notInHardware(profile, subject, hint string) error {
	h := "the hardware capabilities do not include it; choose another profile or add it with a hardware override"
	if profile != "" {
		h = fmt.Sprintf("the hardware profile %q does not include it; choose another profile or add it with a hardware override", profile)
	}
	if hint != "" {
		h = hint + "; " + h
	}
	return &Error{Kind: ErrNotSupported, Subject: subject, Problem: "is not supported by the hardware", Hint: h}
}

// DefaultSubscriptionBuffer is the buffer size Subscribe uses for a size
// below 1.
const DefaultSubscriptionBuffer = 16

// Subscription receives indications on C until Unsubscribe.
//
// Delivery never blocks the Manager: when C's buffer is full, the oldest
// waiting indication is dropped to make room for the new one, and Dropped
// counts it. Every indication carries the whole new record, so the newest
// one is always enough to know the state; Seq shows where some were lost.
type Subscription struct {
	// C delivers indications in order. It is closed by Unsubscribe.
	C <-chan Indication

	ch      chan Indication
	m       *Manager
	dropped atomic.Uint64
}

// Subscribe returns a subscription with a buffer of the given size
// (DefaultSubscriptionBuffer if size < 1).
func (m *Manager) Subscribe(size int) *Subscription {
	if size < 1 {
		size = DefaultSubscriptionBuffer
	}
	ch := make(chan Indication, size)
	s := &Subscription{C: ch, ch: ch, m: m}
	m.mu.Lock()
	m.subs[s] = struct{}{}
	m.mu.Unlock()
	return s
}

// Unsubscribe stops delivery and closes C. Calling it again does nothing.
func (s *Subscription) Unsubscribe() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if _, ok := s.m.subs[s]; ok {
		delete(s.m.subs, s)
		close(s.ch)
	}
}

// Dropped returns how many indications were dropped because C was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// deliver sends ind without blocking, dropping the oldest waiting
// indication if the buffer is full. Only the Manager sends (under its lock),
// so the second attempt always finds room.
func (s *Subscription) deliver(ind Indication) {
	for {
		select {
		case s.ch <- ind:
			return
		default:
		}
		select {
		case <-s.ch:
			s.dropped.Add(1)
		default:
		}
	}
}

func (m *Manager) emitLocked(status StatusCode, r Record) {
	m.seq++
	ind := Indication{Status: status, Name: status.String(), Seq: m.seq, Record: r}
	for s := range m.subs {
		s.deliver(ind)
	}
}

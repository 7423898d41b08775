package capabilities

// SetSegmentOffload makes LsoSupported follow the NIC's wire port: on when
// the port sends the segments of one host super-packet (each ESP-protected
// with its own sequence number) with one segmentation offload, as the UDP
// wire does with UDP_SEGMENT; off otherwise. It sets the bit in the
// hardware record and in the current configuration; current, if not nil,
// is the configuration's override for the current record and wins there
// (an administrator's lso_supported: false stays false). A hardware record
// that claimed LSO without such a port loses the claim. It emits the
// indications of what changed and reports whether anything did.
func (m *Manager) SetSegmentOffload(on bool, current *bool) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hw, cur := m.hw, m.cur
	hw.LsoSupported = on
	cur.LsoSupported = on
	if current != nil {
		cur.LsoSupported = on && *current
	}
	if err := hw.ValidateHardware(); err != nil {
		return false, err
	}
	if err := cur.Validate(); err != nil {
		return false, err
	}
	if err := cur.Within(hw); err != nil {
		return false, err
	}
	changed := false
	if hw != m.hw {
		m.hw = hw
		m.emitLocked(StatusTaskOffloadHardwareCapabilities, hw)
		changed = true
	}
	if cur != m.cur {
		m.cur = cur
		m.emitLocked(StatusTaskOffloadCurrentConfig, cur)
		changed = true
	}
	return changed, nil
}

package sa

// Handle identifies an offloaded bundle (NDIS OffloadHandle): opaque and
// non-zero. Handles are never reused within a table's lifetime, except
// that a reconcile that replaces a changed bundle keeps its handle.
type Handle uint64

// Bundle is an NDIS SA bundle: ESP, AH or ESP+AH, one direction. A Bundle
// is immutable once published; its SAs carry the mutable datapath state.
type Bundle struct {
	Handle Handle
	// Name is the bundle's name, or "".
	Name string
	Dir  Direction
	Mode Mode
	// IPv6: the endpoints are IPv6 (NDIS ADD_SA flag IPSEC_OFFLOAD_V2_IPv6).
	IPv6 bool
	// PacketOffload: the bundle asked for secnic's packet offload rather
	// than crypto offload.
	PacketOffload bool
	// ESP and AH: either may be nil, not both. Outbound processing applies
	// ESP first, then AH; inbound removes AH first, then ESP.
	ESP, AH *SA
}

// SAs returns the bundle's SAs in outbound processing order (ESP, AH).
func (b *Bundle) SAs() []*SA {
	var out []*SA
	if b.ESP != nil {
		out = append(out, b.ESP)
	}
	if b.AH != nil {
		out = append(out, b.AH)
	}
	return out
}

package daemon

// nextAutoMTU is the automatic host (TUN) MTU policy. The MTU must leave
// room for the worst-case overhead of every outbound SA (need: what
// nic.HostMTUFor says for the SAs now in the table), but changing it on
// every SA add and delete makes it flap when SAs of different overhead
// come and go (an IKE daemon rekeying), and every change costs the host
// fragmentation failures and retransmissions on unrelated flows. So:
//
//   - when the SAs need a smaller MTU, it goes down at once (else their
//     packets would not fit the wire);
//   - it never goes up on its own: the largest overhead seen since the
//     last reload keeps it down, so deleting and re-adding SAs changes
//     nothing;
//   - a reload of the configuration (SIGHUP; reload is true) is the
//     request to recompute it from the SAs in the table, up or down.
//
// So between reloads the MTU changes at most once per new largest
// overhead: a handful of times, however many SAs churn.
func nextAutoMTU(cur, need int, reload bool) int {
	if reload || need < cur {
		return need
	}
	return cur
}

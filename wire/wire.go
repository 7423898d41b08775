// Package wire holds the network-side ports of the secnic NIC: the "cable"
// that carries the protected IP packets. Each implements tun.Port, the one
// batched port interface of the NIC (the host side uses it too):
//
//   - UDPPort (OpenUDP) is a point-to-point cable between two secnic NICs,
//     one UDP datagram per packet, moved in batches by recvmmsg/sendmmsg.
//   - LinkPort (OpenLink) puts real ESP, AH and UDP-encapsulated ESP on a
//     Linux network interface, by one of three methods (LinkConfig.Method):
//     PACKET_MMAP rings (the default on Ethernet), AF_XDP with an XDP
//     program (opt-in), or recvmmsg on an AF_PACKET socket and sendmmsg on
//     raw IP sockets; absorber sockets keep the kernel from answering what
//     secnic handles.
//
// An in-memory wire for tests is tun.NewMemPair; tun.NewFaulty wraps any
// port with injected faults.
package wire

// Package capabilities models what secnic advertises as an NDIS IPsec
// Offload Version 2 (IPsecOV2) card, and what is switched on right now.
//
// # The record
//
// [Record] is the NDIS_IPSEC_OFFLOAD_V2 structure (its fields keep the NDIS
// names so that the NDIS view, the binary encoding and the Microsoft
// documentation line up), plus the two checksum-coexistence bits of
// NDIS_OFFLOAD.Flags, plus two secnic-only parts that are never encoded as NDIS
// bits:
//
//   - [Extensions]: algorithms secnic implements that NDIS has no bit for
//     (ChaCha20-Poly1305, AES-CTR, HMAC-SHA-384-192, HMAC-SHA-512-256) and the
//     AES-GCM ICV lengths (8, 12, 16 bytes) the SA layer may accept.
//   - [Limits]: maximum anti-replay window, SAs per direction, whether
//     secnic's packet offload (framing, sequence numbers and anti-replay on the
//     NIC) is available, and whether legacy algorithms (DES, 3DES, MD5) may be
//     used.
//
// # Algorithm names and NDIS bits
//
// Algorithms are named by the canonical strings in [EncryptionNames] and
// [IntegrityNames]; the crypto suites use the same strings. They map onto the
// NDIS masks like this:
//
//	integrity          NDIS authentication bit              encryption          NDIS encryption bit
//	hmac-md5-96        AUTHENTICATION_MD5          0x01     null                ENCRYPTION_NONE         0x001
//	hmac-sha1-96       AUTHENTICATION_SHA_1        0x02     des-cbc             ENCRYPTION_DES_CBC      0x002
//	hmac-sha256-128    AUTHENTICATION_SHA_256      0x04     3des-cbc            ENCRYPTION_3_DES_CBC    0x004
//	aes-gmac-128       AUTHENTICATION_AES_GCM_128  0x08     aes-gcm-128         ENCRYPTION_AES_GCM_128  0x008
//	aes-gmac-192       AUTHENTICATION_AES_GCM_192  0x10     aes-gcm-192         ENCRYPTION_AES_GCM_192  0x010
//	aes-gmac-256       AUTHENTICATION_AES_GCM_256  0x20     aes-gcm-256         ENCRYPTION_AES_GCM_256  0x020
//	hmac-sha384-192    (extension)                          aes-cbc-128         ENCRYPTION_AES_CBC_128  0x040
//	hmac-sha512-256    (extension)                          aes-cbc-192         ENCRYPTION_AES_CBC_192  0x080
//	                                                        aes-cbc-256         ENCRYPTION_AES_CBC_256  0x100
//	                                                        aes-gmac-N          AUTHENTICATION_AES_GCM_N + ENCRYPTION_NONE
//	                                                        aes-ctr-128/192/256 (extension)
//	                                                        chacha20-poly1305   (extension)
//
// ESP with AES-GMAC (RFC 4543, integrity only; canonical encryption name
// "aes-gmac-N" with integrity "none") has no NDIS encryption bit: NDIS
// expresses it as AUTHENTICATION_AES_GCM_N together with ENCRYPTION_NONE. So
// ESP GMAC is available exactly when both of those bits are set, and AH GMAC
// (integrity "aes-gmac-N") when AUTHENTICATION_AES_GCM_N is set. There is no
// separate switch for ESP GMAC: NDIS has one bit for both uses.
//
// # Hardware and current configuration
//
// As in NDIS, a [Manager] keeps two records: the hardware capabilities
// (everything the emulated card can do) and the current configuration (what
// is enabled). The current configuration is always a subset of the hardware
// ([Record.Within]). It starts as [DefaultConfig] of the hardware: everything
// enabled ("miniports should enable all offloads at init"), except the legacy
// algorithms, which RFC 8221 forbids or discourages and which must be allowed
// explicitly.
//
// NDIS_OFFLOAD_PARAMETERS values ([OffloadParameters]) switch AH and ESP
// (the registry keywords number them differently; see [SettingFromKeyword]);
// [Manager.SetFeature], [Manager.SetEncryption], [Manager.SetIntegrity],
// [Manager.SetCurrent] and [Manager.UpdateCurrent] change single parts.
// Every change of either record is reported to subscribers as an
// [Indication] with the NDIS status code
// NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG or
// NDIS_STATUS_TASK_OFFLOAD_HARDWARE_CAPABILITIES; requests that change
// nothing report nothing.
//
// # Profiles
//
// [Profiles] lists the hardware records secnic can pretend to be: full, ndis,
// ixgbe, mlx5 and netdevsim. Each can be changed field by field with
// [Overrides] (see [Config] for the shape of a configuration file section).
// No profile claims LSO by itself: [Manager.SetSegmentOffload] sets
// LsoSupported when the NIC's wire port segments in one offload what the
// host sent as one super-packet (the daemon does this for the udp wire with
// UDP_SEGMENT).
//
// # Views
//
// [Record.NDISView] lists the record as NDIS fields, [Record.SecnicView] the
// secnic-only parts, [LinuxView] the ethtool features, and
// [Record.MarshalBinary] writes the 32-byte NDIS_IPSEC_OFFLOAD_V2 structure.
//
// # The SA layer
//
// [Check] (or [Manager.Check]) tells the SA layer whether a bundle it is about
// to install is within the current configuration, and if not, which
// capability is missing and how to enable it. [Record.CheckCapacity] checks
// the bundle and per-direction limits.
package capabilities

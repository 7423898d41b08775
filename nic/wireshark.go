package nic

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/secnic/secnic/sadb"
)

// Wireshark's ESP SA table ("esp_sa" UAT file, in the Wireshark profile
// directory, or one record at a time with tshark -o 'uat:esp_sa:RECORD').
// A record is eight quoted, comma-separated fields:
//
//	"IPv4","SRC","DST","0xSPI","ENCRYPTION","0xENCKEY","AUTHENTICATION","0xAUTHKEY"
//
// The algorithm fields must be spelled exactly as Wireshark's ESP dissector
// names them (epan/dissectors/packet-ipsec.c; checked against Wireshark
// 4.0). The encryption key is the whole KEYMAT: for AES-GCM and AES-CTR the
// salt/nonce is the last 4 bytes, as secnic keeps it. Wireshark 4.0 cannot
// decrypt ChaCha20-Poly1305 or ESP with AES-GMAC; those SAs are written as
// comment lines so the file still documents them.

var wiresharkEnc = map[string]string{
	"null":        "NULL",
	"des-cbc":     "DES-CBC [RFC2405]",
	"3des-cbc":    "TripleDES-CBC [RFC2451]",
	"aes-cbc-128": "AES-CBC [RFC3602]",
	"aes-cbc-192": "AES-CBC [RFC3602]",
	"aes-cbc-256": "AES-CBC [RFC3602]",
	"aes-ctr-128": "AES-CTR [RFC3686]",
	"aes-ctr-192": "AES-CTR [RFC3686]",
	"aes-ctr-256": "AES-CTR [RFC3686]",
}

var wiresharkAuth = map[string]string{
	"":                "NULL",
	"none":            "NULL",
	"hmac-md5-96":     "HMAC-MD5-96 [RFC2403]",
	"hmac-sha1-96":    "HMAC-SHA-1-96 [RFC2404]",
	"hmac-sha256-128": "HMAC-SHA-256-128 [RFC4868]",
	"hmac-sha384-192": "HMAC-SHA-384-192 [RFC4868]",
	"hmac-sha512-256": "HMAC-SHA-512-256 [RFC4868]",
}

// WiresharkEncName returns Wireshark's name of an ESP encryption algorithm
// (secnic's canonical name, and the AES-GCM ICV length, 0 = 16), or false
// if Wireshark cannot decrypt it.
func WiresharkEncName(enc string, icvLen int) (string, bool) {
	if strings.HasPrefix(enc, "aes-gcm-") {
		if icvLen == 0 {
			icvLen = 16
		}
		return fmt.Sprintf("AES-GCM with %d octet ICV [RFC4106]", icvLen), true
	}
	n, ok := wiresharkEnc[enc]
	return n, ok
}

// WiresharkAuthName returns Wireshark's name of an ESP integrity
// algorithm, or false if Wireshark has none.
func WiresharkAuthName(auth string) (string, bool) {
	n, ok := wiresharkAuth[auth]
	return n, ok
}

// WriteWiresharkESPSA writes Wireshark's ESP SA table for the ESP SAs of
// the given bundles, which must include their keys (sa.Table.List(true)).
// AH-only bundles have nothing to decrypt and are skipped. Keys are
// secrets: write the file with mode 0600.
func WriteWiresharkESPSA(w io.Writer, bundles []sadb.BundleInfo) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# Wireshark ESP SA table written by secnic (Edit > Preferences > Protocols > ESP, or the esp_sa file of a profile).")
	fmt.Fprintln(bw, "# Keys are secret.")
	for _, b := range bundles {
		e := b.Spec.ESP
		if e == nil {
			continue
		}
		if e.KeysRedacted || (e.EncKey.IsZero() && e.AuthKey.IsZero() && e.Enc != "null") {
			return fmt.Errorf("nic: bundle %d has no keys in this listing; list the bundles with keys (sa.Table.List(true))", b.Handle)
		}
		fam := "IPv4"
		if strings.EqualFold(b.Spec.Family, "ipv6") || strings.Contains(b.Spec.Src+b.Spec.Dst, ":") {
			fam = "IPv6"
		}
		encName, encOK := WiresharkEncName(e.Enc, e.ICVLen)
		authName, authOK := WiresharkAuthName(e.Auth)
		prefix := ""
		if !encOK || !authOK {
			prefix = fmt.Sprintf("# Wireshark cannot decrypt %s/%s: ", e.Enc, orNone(e.Auth))
			if !encOK {
				encName = e.Enc
			}
			if !authOK {
				authName = e.Auth
			}
		}
		encKey, authKey := "", ""
		if e.EncKey.Len() > 0 {
			encKey = "0x" + e.EncKey.Hex()
		}
		if e.AuthKey.Len() > 0 {
			authKey = "0x" + e.AuthKey.Hex()
		}
		fmt.Fprintf(bw, "%s%q,%q,%q,\"0x%08x\",%q,%q,%q,%q\n", prefix, fam, uatAddr(b.Spec.Src), uatAddr(b.Spec.Dst),
			uint32(e.SPI), encName, encKey, authName, authKey)
	}
	return bw.Flush()
}

func uatAddr(a string) string {
	switch a {
	case "", "0.0.0.0", "::":
		return "*"
	}
	return a
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

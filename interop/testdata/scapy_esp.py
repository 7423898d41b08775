#!/usr/bin/python3
"""ESP interoperability peer for secnic's tests, built on scapy's IPsec module.

Reads one JSON document on stdin: {"cases": [case, ...]}. For each case it
decrypts the packets secnic produced ("secnic_packets", hex) and checks that
they equal the plaintext datagrams ("plain", hex), then encrypts the
plaintext datagrams with scapy and returns them for secnic to decrypt.
Writes {"results": [{"name", "ok", "error", "scapy_packets"}]} on stdout.
"""
import json
import sys
import traceback

from scapy.all import IP, IPv6, UDP, raw
from scapy.layers.ipsec import ESP, SecurityAssociation

CRYPT = {
    "null": "NULL",
    "aes-cbc-128": "AES-CBC", "aes-cbc-192": "AES-CBC", "aes-cbc-256": "AES-CBC",
    "aes-ctr-128": "AES-CTR", "aes-ctr-192": "AES-CTR", "aes-ctr-256": "AES-CTR",
    "aes-gcm-128": "AES-GCM", "aes-gcm-192": "AES-GCM", "aes-gcm-256": "AES-GCM",
    "chacha20-poly1305": "CHACHA20-POLY1305",
    "des-cbc": "DES", "3des-cbc": "3DES",
}
AUTH = {
    "none": "NULL",
    "hmac-sha1-96": "HMAC-SHA1-96",
    "hmac-sha256-128": "SHA2-256-128",
    "hmac-sha384-192": "SHA2-384-192",
    "hmac-sha512-256": "SHA2-512-256",
    "hmac-md5-96": "HMAC-MD5-96",
}


def parse(b, v6):
    return IPv6(b) if v6 else IP(b)


def make_sa(c):
    tunnel = None
    if c["mode"] == "tunnel":
        tunnel = IPv6(src=c["src"], dst=c["dst"]) if c["outer6"] else IP(src=c["src"], dst=c["dst"])
    nat = UDP(sport=c["udp_port"], dport=c["udp_port"], chksum=0) if c.get("udp_port") else None
    kw = dict(
        crypt_algo=CRYPT[c["enc"]], crypt_key=bytes.fromhex(c["enc_key"]),
        auth_algo=AUTH[c["auth"]], auth_key=bytes.fromhex(c["auth_key"]) if c["auth_key"] else None,
        tunnel_header=tunnel, nat_t_header=nat,
        esn_en=c["esn"], esn=c.get("seq_high", 0),
    )
    if c.get("icv_len"):
        kw["crypt_icv_size"] = c["icv_len"]
    return SecurityAssociation(ESP, spi=c["spi"], **kw)


def fix_udp_len(b, v6):
    """Sets the UDP length of a UDP-encapsulated ESP packet from scapy.

    scapy builds the RFC 3948 UDP header (nat_t_header) before the ESP
    payload exists and leaves its length at 8; a receiver that checks the
    UDP length against the datagram (secnic, and Linux, which trims the
    datagram to that length) drops such a packet. The outer IPv6 header
    here has no extension headers; the UDP checksum is 0.
    """
    b = bytearray(b)
    off = 40 if v6 else (b[0] & 0x0F) * 4
    proto = b[6] if v6 else b[9]
    if proto == 17:
        b[off + 4:off + 6] = (len(b) - off).to_bytes(2, "big")
    return bytes(b)


def run(c):
    out = {"name": c["name"], "ok": True, "error": "", "scapy_packets": []}
    plain = [bytes.fromhex(p) for p in c["plain"]]
    inner6 = c["inner6"]
    sa = make_sa(c)
    for i, hp in enumerate(c["secnic_packets"]):
        pkt = parse(bytes.fromhex(hp), c["outer6"])
        dec = sa.decrypt(pkt)
        got = raw(dec)
        if got != plain[i]:
            out["ok"] = False
            out["error"] += "packet %d decrypted by scapy differs:\n got %s\nwant %s\n" % (i, got.hex(), plain[i].hex())
    sa = make_sa(c)
    for i, p in enumerate(plain):
        seq = c["scapy_first_seq"] + i
        enc = sa.encrypt(parse(p, inner6 if c["mode"] == "tunnel" else c["outer6"]), seq_num=seq)
        wire = raw(enc)
        if c.get("udp_port"):
            wire = fix_udp_len(wire, c["outer6"])
        out["scapy_packets"].append(wire.hex())
    return out


def main():
    req = json.load(sys.stdin)
    results = []
    for c in req["cases"]:
        try:
            results.append(run(c))
        except Exception:
            results.append({"name": c["name"], "ok": False, "error": traceback.format_exc(), "scapy_packets": []})
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()

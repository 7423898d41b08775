#!/usr/bin/python3
"""Checks LSO segments secnic's crypto-offload NIC produced, with scapy.

Reads {"mode", "v6", "src", "dst", "spi", "enc", "enc_key", "auth",
"auth_key", "packets": [hex]} on stdin, decrypts every ESP packet with
scapy's SecurityAssociation and checks the inner TCP checksum. Writes
{"ok", "error", "segments": [{"seq", "flags", "payload"}]} on stdout.
"""
import json
import sys
import traceback

from scapy.all import IP, IPv6, TCP, raw
from scapy.layers.ipsec import ESP, SecurityAssociation

CRYPT = {"aes-gcm-128": "AES-GCM", "aes-cbc-128": "AES-CBC"}
AUTH = {"none": "NULL", "hmac-sha256-128": "SHA2-256-128"}


def main():
    c = json.load(sys.stdin)
    ip = IPv6 if c["v6"] else IP
    tunnel = ip(src=c["src"], dst=c["dst"]) if c["mode"] == "tunnel" else None
    sa = SecurityAssociation(
        ESP, spi=c["spi"], crypt_algo=CRYPT[c["enc"]], crypt_key=bytes.fromhex(c["enc_key"]),
        auth_algo=AUTH[c["auth"]], auth_key=bytes.fromhex(c["auth_key"]) if c["auth_key"] else None,
        tunnel_header=tunnel)
    out = []
    try:
        for h in c["packets"]:
            d = sa.decrypt(ip(bytes.fromhex(h)))
            d = d.__class__(raw(d))
            t = d[TCP]
            got = t.chksum
            d2 = d.copy()
            del d2[TCP].chksum
            d2 = d2.__class__(raw(d2))
            if d2[TCP].chksum != got:
                raise ValueError("TCP checksum %#x, want %#x" % (got, d2[TCP].chksum))
            out.append({"seq": t.seq, "flags": int(t.flags), "payload": raw(t.payload).hex()})
        json.dump({"ok": True, "segments": out}, sys.stdout)
    except Exception as e:
        json.dump({"ok": False, "error": "%s\n%s" % (e, traceback.format_exc())}, sys.stdout)


main()

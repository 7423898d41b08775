#!/usr/bin/python3
"""Live ESP peer for secnic's interop test: runs inside a network namespace.

  scapy_live.py sniff IFACE COUNT   <case.json   decrypts the first COUNT ESP packets
                                                 with the case's SPI seen on IFACE; prints
                                                 "ready" first, then {"plain": [hex...]}
  scapy_live.py send                <case.json   encrypts the case's plaintext datagrams
                                                 and sends them at layer 3; prints {"sent": N}

case.json: {"spi", "enc", "auth", "enc_key", "auth_key", "src", "dst" (scapy's view:
src = this host), "plain": [hex], "first_seq"}.
"""
import json
import sys

from scapy.all import IP, conf, raw, send, sniff
from scapy.layers.ipsec import ESP, SecurityAssociation

CRYPT = {"aes-gcm-128": "AES-GCM", "aes-gcm-256": "AES-GCM", "aes-cbc-128": "AES-CBC",
         "aes-ctr-128": "AES-CTR", "chacha20-poly1305": "CHACHA20-POLY1305", "null": "NULL"}
AUTH = {"none": "NULL", "hmac-sha1-96": "HMAC-SHA1-96", "hmac-sha256-128": "SHA2-256-128",
        "hmac-sha512-256": "SHA2-512-256"}


def make_sa(c, src, dst):
    return SecurityAssociation(
        ESP, spi=c["spi"], crypt_algo=CRYPT[c["enc"]], crypt_key=bytes.fromhex(c["enc_key"]),
        auth_algo=AUTH[c["auth"]], auth_key=bytes.fromhex(c["auth_key"]) if c["auth_key"] else None,
        tunnel_header=IP(src=src, dst=dst))


def main():
    c = json.load(sys.stdin)
    conf.verb = 0
    if sys.argv[1] == "sniff":
        iface, count = sys.argv[2], int(sys.argv[3])
        sa = make_sa(c, c["dst"], c["src"])  # packets come from the peer
        got = []

        def keep(p):
            # ESP itself, not the ICMP error this kernel (no ESP support)
            # sends back quoting it.
            return IP in p and p[IP].proto == 50 and p[IP].dst == c["src"] and p[ESP].spi == c["spi"]

        pkts = sniff(iface=iface, lfilter=keep, count=count, timeout=20,
                     started_callback=lambda: print("ready", flush=True))
        for p in pkts:
            got.append(raw(sa.decrypt(p[IP])).hex())
        print(json.dumps({"plain": got}), flush=True)
    else:
        sa = make_sa(c, c["src"], c["dst"])
        for i, h in enumerate(c["plain"]):
            send(sa.encrypt(IP(bytes.fromhex(h)), seq_num=c["first_seq"] + i))
        print(json.dumps({"sent": len(c["plain"])}), flush=True)


if __name__ == "__main__":
    main()

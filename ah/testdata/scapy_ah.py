#!/usr/bin/python3
"""AH interop peer for secnic's tests: scapy (an independent implementation)
seals and opens AH packets on request.

Reads one JSON request per line on stdin and writes one JSON answer per line
on stdout. A request is
  {"op": "seal" | "open", "alg": scapy auth algo name, "key": hex,
   "spi": int, "seq": int, "esn_en": bool, "esn": int (high 32 bits),
   "tunnel": null | {"src": addr, "dst": addr}, "pkt": hex IP datagram}
and the answer {"ok": true, "pkt": hex} or {"ok": false, "err": text}.
"seal" protects an IP datagram; "open" verifies and strips AH.
The first line written is {"scapy": version} once scapy is loaded.
"""
import json
import sys

try:
    import scapy
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.ipsec import AH, SecurityAssociation
    from scapy.compat import raw
except ImportError as e:  # reported to the Go test, which skips
    print(json.dumps({"scapy": None, "err": str(e)}), flush=True)
    sys.exit(0)


def parse(b):
    return IP(b) if b[0] >> 4 == 4 else IPv6(b)


def sa_for(req):
    tunnel = None
    if req.get("tunnel"):
        t = req["tunnel"]
        tunnel = IP(src=t["src"], dst=t["dst"]) if ":" not in t["dst"] \
            else IPv6(src=t["src"], dst=t["dst"])
    return SecurityAssociation(
        AH, spi=req["spi"], seq_num=req.get("seq", 1),
        auth_algo=req["alg"], auth_key=bytes.fromhex(req["key"]),
        tunnel_header=tunnel, esn_en=req.get("esn_en", False),
        esn=req.get("esn", 0))


def handle(req):
    sa = sa_for(req)
    pkt = parse(bytes.fromhex(req["pkt"]))
    if req["op"] == "seal":
        out = sa.encrypt(pkt)
    elif req["op"] == "open":
        out = sa.decrypt(pkt)
    else:
        raise ValueError("unknown op %r" % req["op"])
    return {"ok": True, "pkt": raw(out).hex()}


def main():
    print(json.dumps({"scapy": scapy.__version__}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            ans = handle(json.loads(line))
        except Exception as e:  # an ICV failure is an answer, not a crash
            ans = {"ok": False, "err": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(ans), flush=True)


if __name__ == "__main__":
    main()

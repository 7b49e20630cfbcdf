"""dkim_verify.py: dkimpy's verdict on each DKIM signature of a message.

Run with the system's /usr/bin/python3, where Debian's python3-dkim (and
python3-nacl, for ed25519-sha256) are installed, whatever python runs the
tests. Reads JSON on stdin: {"message": hex of the message, "records":
{"SEL._domainkey.DOMAIN.": "v=DKIM1; ..."}}; writes a JSON list with one
boolean per DKIM-Signature field, in order. DNS is never asked: the keys
come from the records given (what `submitctl dkim export` printed).
"""

import json
import sys

import dkim


def main():
    req = json.load(sys.stdin)
    msg = bytes.fromhex(req["message"])
    recs = {k.lower(): v.encode() for k, v in req["records"].items()}

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return recs.get(name.lower())

    d = dkim.DKIM(msg)
    n = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    out = []
    for i in range(n):
        try:
            out.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:
            out.append(False)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

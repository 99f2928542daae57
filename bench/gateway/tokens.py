#!/usr/bin/env python3
"""Creates the benchmark's tokens through the admin API and writes the files run.sh needs.

    tokens.py ADMIN_URL ADMIN_TOKEN_FILE OUT_DIR [COUNT]

Writes, in OUT_DIR:
  tokens.txt   COUNT valid tokens with scope bench:read (owners tenant-0 .. tenant-9)
  caller.txt   one token with tokentrail:verify (the caller of /v1/verify)
  unknown.txt  COUNT well-formed tokens with valid checksums but ids tokentrail never issued
  garbage.txt  COUNT strings that are not tokens at all
  keys.map     the same COUNT valid tokens as an nginx map: "Bearer <token>" tenant-N;
Standard library only; one keep-alive connection.
"""
import http.client
import json
import os
import random
import sys
import urllib.parse
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def b62(n, width):
    out = []
    for _ in range(width):
        out.append(ALPHABET[n % 62])
        n //= 62
    return "".join(reversed(out))


def well_formed(prefix, rng):
    """<prefix>_<16 base62>_<32 base62><CRC32 of the rest as 6 base62 digits> (crates/token)."""
    ident = "".join(rng.choice(ALPHABET) for _ in range(16))
    secret = "".join(rng.choice(ALPHABET) for _ in range(32))
    body = f"{prefix}_{ident}_{secret}"
    return body + b62(zlib.crc32(body.encode()), 6)


def main():
    url, token_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    admin = open(token_file).read().strip()
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}

    def create(body):
        conn.request("POST", "/v1/tokens", json.dumps(body), headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 201:
            sys.exit(f"tokens.py: POST /v1/tokens answered {r.status}: {data.decode(errors='replace')}")
        return json.loads(data)["token"]

    tokens = []
    for k in range(count):
        tokens.append(create({"name": f"bench-{k}", "owner": f"tenant-{k % 10}", "scopes": ["bench:read"]}))
    caller = create({"name": "bench-verifier", "owner": "bench", "scopes": ["tokentrail:verify"]})

    prefix = tokens[0].split("_", 1)[0]
    rng = random.Random(20240601)
    unknown = [well_formed(prefix, rng) for _ in range(count)]
    garbage = ["".join(rng.choice(ALPHABET + "-.") for _ in range(rng.randint(20, 60))) for _ in range(count)]

    def write(name, lines):
        with open(os.path.join(out, name), "w") as f:
            f.write("\n".join(lines) + "\n")

    write("tokens.txt", tokens)
    write("caller.txt", [caller])
    write("unknown.txt", unknown)
    write("garbage.txt", garbage)
    write("keys.map", [f'"Bearer {t}" tenant-{k % 10};' for k, t in enumerate(tokens)])
    print(f"created {count} tokens (prefix {prefix}) and one verify caller")


if __name__ == "__main__":
    main()

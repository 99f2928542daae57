#!/usr/bin/env python3
"""An independent verifier of tokentrail's ledger, written from docs/ledger.md alone.

It shares no code with tokentrail and needs nothing but the Python 3 standard library, so an
auditor can read all of it. It checks:

- a signed checkpoint: the C2SP signed-note signature line (em dash, key name, base64 of key ID
  and Ed25519 signature), the key ID, the Ed25519 signature (RFC 8032, verified by the small
  pure-Python implementation below), and the C2SP tlog-checkpoint body (origin, size, root);
- an event's inclusion: leaf hash = SHA-256(0x00 || leaf), and the RFC 9162 inclusion proof
  against the checkpoint's root;
- consistency between two checkpoints (RFC 9162 consistency proof);
- a leaf's bytes, decoded field by field as docs/ledger.md specifies (which shows that the
  spec describes every byte).

Usage (files are what the HTTP API returns; KEY is the text of `tokentrail audit key`):

  verify.py checkpoint  --key KEY --checkpoint NOTE
  verify.py inclusion   --key KEY --checkpoint NOTE --leaf LEAF.json --proof PROOF.json
  verify.py consistency --key KEY --old OLD_NOTE --new NEW_NOTE --proof CONSISTENCY.json
  verify.py decode-leaf LEAF.json
  verify.py selftest
  verify.py vectors DIR   (the transparency-dev inclusion/ and consistency/ vectors)

`--key` takes the key text itself or `@FILE`. Exit status: 0 verified, 1 not verified (the
reason on stderr), 2 usage error. Results go to stdout as one JSON object.
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import json
import os
import sys


class VerifyError(Exception):
    """The input does not verify."""


# ---------------------------------------------------------------------------------------------
# Ed25519 signature verification, after the reference code of RFC 8032 section 6 (verify only;
# no secret is ever handled here, so constant time does not matter).

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _inv(x):
    return pow(x, P - 2, P)


def _point_add(a, b):
    # Extended homogeneous coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z.
    aa = (a[1] - a[0]) * (b[1] - b[0]) % P
    bb = (a[1] + a[0]) * (b[1] + b[0]) % P
    cc = 2 * a[3] * b[3] * D % P
    dd = 2 * a[2] * b[2] % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _point_mul(s, pt):
    q = (0, 1, 1, 0)  # the neutral element
    while s > 0:
        if s & 1:
            q = _point_add(q, pt)
        pt = _point_add(pt, pt)
        s >>= 1
    return q


def _point_equal(a, b):
    # x1 / z1 == x2 / z2  <==>  x1 * z2 == x2 * z1
    if (a[0] * b[2] - b[0] * a[2]) % P != 0:
        return False
    return (a[1] * b[2] - b[1] * a[2]) % P == 0


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * _inv(D * y * y + 1)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


_GY = 4 * _inv(5) % P
_GX = _recover_x(_GY, 0)
G = (_GX, _GY, 1, _GX * _GY % P)


def _point_decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def ed25519_verify(public, msg, signature):
    """RFC 8032 section 5.1.7: True if `signature` is a valid signature of `msg` by `public`."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _point_decompress(public)
    if a is None:
        return False
    rs = signature[:32]
    r = _point_decompress(rs)
    if r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(rs + public + msg).digest(), "little") % L
    return _point_equal(_point_mul(s, G), _point_add(r, _point_mul(h, a)))


# ---------------------------------------------------------------------------------------------
# Verifier keys and signed notes (C2SP signed-note; the key format of golang.org/x/mod/sumdb/note).

ALG_ED25519 = 0x01


def key_id(name, public):
    """The first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), big-endian."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()
    return int.from_bytes(digest[:4], "big")


def _b64(text, what):
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise VerifyError(f"{what} is not base64: {e}") from None


def parse_verifier_key(text):
    """`name+hex(key ID)+base64(0x01 || public key)` -> (name, key ID, public key)."""
    # The base64 part may itself contain '+', so split off the name and the ID only.
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise VerifyError("the verifier key is not name+keyid+base64")
    name, hex_id, b64 = parts
    if not name or any(c.isspace() for c in name):
        raise VerifyError("the verifier key has an invalid name")
    if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
        raise VerifyError("the verifier key's ID is not 8 lowercase hex digits")
    raw = _b64(b64, "the verifier key")
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise VerifyError("the verifier key is not an Ed25519 key (0x01 followed by 32 bytes)")
    public = raw[1:]
    kid = int(hex_id, 16)
    if key_id(name, public) != kid:
        raise VerifyError("the verifier key's ID does not match its name and public key")
    return name, kid, public


def open_note(note, key):
    """Checks a signed note's signature by `key`; returns the note's text (ending in a newline)."""
    name, kid, public = key
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise VerifyError("the note contains a control character")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise VerifyError("the note has no blank line before its signatures, or does not end with a newline")
    text, signatures = note[: split + 1], note[split + 2 :]
    found = False
    for line in signatures[:-1].split("\n"):
        prefix = "\u2014 "  # an em dash and a space
        if not line.startswith(prefix):
            raise VerifyError(f"signature line {line!r} does not start with an em dash and a space")
        fields = line[len(prefix) :].split(" ")
        if len(fields) != 2:
            raise VerifyError(f"signature line {line!r} is not '\u2014 <name> <base64>'")
        sig_name, b64 = fields
        raw = _b64(b64, "a signature")
        if len(raw) < 5:
            raise VerifyError("a signature is too short to hold a key ID")
        if sig_name != name or int.from_bytes(raw[:4], "big") != kid:
            continue  # signed by another key: allowed, but proves nothing here
        if len(raw) != 4 + 64 or not ed25519_verify(public, text.encode(), raw[4:]):
            raise VerifyError(f"the signature by {name} does not verify")
        found = True
    if not found:
        raise VerifyError(f"the note carries no signature by {name} with key ID {kid:08x}")
    return text


def parse_checkpoint(text):
    """C2SP tlog-checkpoint body -> (origin, size, root)."""
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise VerifyError("a checkpoint has at least three lines: origin, size, root")
    origin, size_text, root_text = lines[:3]
    if not origin:
        raise VerifyError("the checkpoint's origin is empty")
    if not size_text.isdigit() or not size_text.isascii() or (size_text != "0" and size_text.startswith("0")):
        raise VerifyError(f"the checkpoint's size {size_text!r} is not a decimal number")
    root = _b64(root_text, "the checkpoint's root")
    if len(root) != 32:
        raise VerifyError("the checkpoint's root is not 32 bytes")
    return origin, int(size_text), root


def open_checkpoint(note, key):
    origin, size, root = parse_checkpoint(open_note(note, key))
    if origin != key[0]:
        raise VerifyError(f"the checkpoint's origin {origin!r} is not the key's name {key[0]!r}")
    return origin, size, root


# ---------------------------------------------------------------------------------------------
# RFC 6962 / RFC 9162 Merkle tree hashing and proof verification.


def leaf_hash(leaf):
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf_h, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise VerifyError(f"index {index} is not inside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf_h
    for p in path:
        if sn == 0:
            raise VerifyError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerifyError("the inclusion proof is too short")
    if r != root:
        raise VerifyError("the inclusion proof does not lead to the checkpoint's root")


def verify_consistency(first, second, first_hash, second_hash, path):
    """RFC 9162 section 2.1.4.2 (equal sizes: an empty proof and equal roots)."""
    if first == 0 or first > second:
        raise VerifyError(f"no consistency proof exists from size {first} to size {second}")
    if first == second:
        if path:
            raise VerifyError("a proof between equal sizes must be empty")
        if first_hash != second_hash:
            raise VerifyError(f"two different roots for size {first}")
        return
    if not path:
        raise VerifyError("the consistency proof is empty")
    if first & (first - 1) == 0:
        path = [first_hash] + list(path)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerifyError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerifyError("the consistency proof is too short")
    if fr != first_hash:
        raise VerifyError("the consistency proof does not lead to the older checkpoint's root")
    if sr != second_hash:
        raise VerifyError("the consistency proof does not lead to the newer checkpoint's root")


# ---------------------------------------------------------------------------------------------
# The leaf encoding, version 1 (docs/ledger.md, "Leaves").

MAGIC_V1 = b"TTL\x01"
PERSONAL_FIELDS = ["owner", "source_ip", "user_agent", "path", "explanation", "details"]


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n, what):
        if self.pos + n > len(self.data):
            raise VerifyError(f"the leaf ends inside {what} (offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self, what):
        return int.from_bytes(self.take(4, what), "big")

    def u64(self, what):
        return int.from_bytes(self.take(8, what), "big")

    def i64(self, what):
        return int.from_bytes(self.take(8, what), "big", signed=True)

    def string(self, what):
        raw = self.take(self.u32(what), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise VerifyError(f"{what} is not UTF-8") from None

    def optional(self, what, read):
        flag = self.take(1, what)[0]
        if flag == 0:
            return None
        if flag != 1:
            raise VerifyError(f"{what}: optional flag {flag} is neither 0 nor 1")
        return read(what)

    def strings(self, what):
        return [self.string(what) for _ in range(self.u32(what))]


def format_time(micros):
    t = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(microseconds=micros)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decode_leaf(leaf):
    r = _Reader(leaf)
    if r.take(4, "the magic") != MAGIC_V1:
        raise VerifyError("the leaf does not start with TTL version 1")
    out = {"version": 1, "seq": r.u64("seq"), "id": r.string("id")}
    micros = r.i64("time")
    out["time_us"] = micros
    out["time"] = format_time(micros)
    out["kind"] = r.string("kind")
    out["source"] = r.string("source")
    for field in ["token_id", "token_fingerprint", "method", "route", "resource", "action"]:
        out[field] = r.optional(field, r.string)
    out["sensitivity"] = r.strings("sensitivity")
    out["decision"] = r.string("decision")
    out["reason"] = r.string("reason")
    for field in ["status", "latency_us", "bytes_out"]:
        out[field] = r.optional(field, r.u64)
    for field in ["request_id", "node", "operation", "target", "required_scope"]:
        out[field] = r.optional(field, r.string)
    out["granted_scopes"] = r.strings("granted_scopes")
    out["commitments"] = {f: r.take(32, f"the {f} commitment").hex() for f in PERSONAL_FIELDS}
    if r.pos != len(leaf):
        raise VerifyError(f"{len(leaf) - r.pos} bytes follow the last field of the leaf")
    if out["kind"] not in ("access", "admin"):
        raise VerifyError(f"unknown kind {out['kind']!r}")
    if out["decision"] not in ("allow", "deny"):
        raise VerifyError(f"unknown decision {out['decision']!r}")
    return out


# ---------------------------------------------------------------------------------------------
# Commands.


def _read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def _json(path):
    try:
        return json.loads(_read(path))
    except json.JSONDecodeError as e:
        raise VerifyError(f"{path} is not JSON: {e}") from None


def _hash(text, what):
    h = _b64(text, what)
    if len(h) != 32:
        raise VerifyError(f"{what} is not 32 bytes")
    return h


def _int(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VerifyError(f"{what} is not a non-negative integer")
    return value


def _key(arg):
    return parse_verifier_key(_read(arg[1:]) if arg.startswith("@") else arg)


def cmd_checkpoint(args):
    origin, size, root = open_checkpoint(_read(args.checkpoint), _key(args.key))
    return {"origin": origin, "size": size, "root": base64.b64encode(root).decode()}


def cmd_inclusion(args):
    origin, size, root = open_checkpoint(_read(args.checkpoint), _key(args.key))
    leaf_view, proof = _json(args.leaf), _json(args.proof)
    leaf = _b64(leaf_view.get("leaf", ""), "the leaf")
    fields = decode_leaf(leaf)
    index = _int(proof.get("index"), "the proof's index")
    if _int(leaf_view.get("index"), "the leaf's index") != index or fields["seq"] != index:
        raise VerifyError("the leaf's position, the leaf's index and the proof's index differ")
    if _int(proof.get("tree_size"), "the proof's tree_size") != size:
        raise VerifyError(f"the proof is for size {proof.get('tree_size')}, the checkpoint for size {size}")
    lh = leaf_hash(leaf)
    if _hash(proof.get("leaf_hash", ""), "the proof's leaf_hash") != lh:
        raise VerifyError("the proof's leaf_hash is not SHA-256(0x00 || leaf)")
    path = [_hash(h, "a proof hash") for h in proof.get("hashes", [])]
    verify_inclusion(index, size, lh, path, root)
    return {"origin": origin, "size": size, "index": index, "id": fields["id"], "proof_hashes": len(path)}


def cmd_consistency(args):
    key = _key(args.key)
    _, old_size, old_root = open_checkpoint(_read(args.old), key)
    origin, new_size, new_root = open_checkpoint(_read(args.new), key)
    proof = _json(args.proof)
    if _int(proof.get("from"), "from") != old_size or _int(proof.get("to"), "to") != new_size:
        raise VerifyError(f"the proof is from {proof.get('from')} to {proof.get('to')}, not {old_size} to {new_size}")
    path = [_hash(h, "a proof hash") for h in proof.get("hashes", [])]
    verify_consistency(old_size, new_size, old_root, new_root, path)
    return {"origin": origin, "from": old_size, "to": new_size, "proof_hashes": len(path)}


def cmd_decode_leaf(args):
    leaf_view = _json(args.leaf)
    leaf = _b64(leaf_view.get("leaf", ""), "the leaf")
    out = decode_leaf(leaf)
    if "index" in leaf_view and leaf_view["index"] != out["seq"]:
        raise VerifyError(f"the leaf says position {out['seq']}, the API index {leaf_view['index']}")
    out["leaf_hash"] = base64.b64encode(leaf_hash(leaf)).decode()
    return out


def cmd_selftest(_args):
    # RFC 8032 section 7.1, tests 1-3: (public key, message, signature).
    vectors = [
        (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
            "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ]
    for i, (pk, msg, sig) in enumerate(vectors, 1):
        pk, msg, sig = bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)
        if not ed25519_verify(pk, msg, sig):
            raise VerifyError(f"RFC 8032 test {i} does not verify")
        bad = bytearray(sig)
        bad[0] ^= 1
        if ed25519_verify(pk, msg, bytes(bad)) or ed25519_verify(pk, msg + b"x", sig):
            raise VerifyError(f"RFC 8032 test {i} verifies a changed signature or message")
    # RFC 6962 hashes of the empty tree and of one leaf; inclusion and consistency in a small tree.
    if hashlib.sha256(b"").hexdigest() != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855":
        raise VerifyError("SHA-256 is broken")
    leaves = [leaf_hash(bytes([i])) for i in range(7)]

    def root(hs):
        if len(hs) == 1:
            return hs[0]
        k = 1
        while k * 2 < len(hs):
            k *= 2
        return node_hash(root(hs[:k]), root(hs[k:]))

    # Index 2 of 7: the path is leaf 3, node(0,1), node(4..6).
    verify_inclusion(2, 7, leaves[2], [leaves[3], root(leaves[:2]), root(leaves[4:])], root(leaves))
    # 3 -> 7 (RFC 9162 example shape): leaf 2, leaf 3, node(0,1), node(4..6).
    verify_consistency(3, 7, root(leaves[:3]), root(leaves), [leaves[2], leaves[3], root(leaves[:2]), root(leaves[4:])])
    # 4 -> 7: the old root is implied; the path is node(4..6).
    verify_consistency(4, 7, root(leaves[:4]), root(leaves), [root(leaves[4:])])
    return {"selftest": "ok"}


def cmd_vectors(args):
    # Some vectors use placeholder roots that are not 32 bytes ("don't care"), so roots and proof
    # hashes are not length-checked here; a leaf hash must be 32 bytes (as in transparency-dev).
    counts = {"inclusion": 0, "consistency": 0}
    wrong = []
    for kind in counts:
        base = os.path.join(args.dir, kind)
        for folder, _, files in sorted(os.walk(base)):
            for name in sorted(files):
                if not name.endswith(".json"):
                    continue
                path = os.path.join(folder, name)
                v = _json(path)
                try:
                    if kind == "inclusion":
                        verify_inclusion(
                            v["leafIdx"],
                            v["treeSize"],
                            _hash(v["leafHash"] or "", "leafHash"),
                            [_b64(h, "a proof hash") for h in v["proof"] or []],
                            _b64(v["root"] or "", "root"),
                        )
                    else:
                        verify_consistency(
                            v["size1"],
                            v["size2"],
                            _b64(v["root1"] or "", "root1"),
                            _b64(v["root2"] or "", "root2"),
                            [_b64(h, "a proof hash") for h in v["proof"] or []],
                        )
                    accepted = True
                except VerifyError:
                    accepted = False
                if accepted == v["wantErr"]:
                    wrong.append(f"{path}: wantErr {v['wantErr']} but {'accepted' if accepted else 'rejected'}")
                counts[kind] += 1
    if wrong:
        raise VerifyError("vectors answered wrongly:\n" + "\n".join(wrong))
    if not all(counts.values()):
        raise VerifyError(f"no vectors found under {args.dir}: {counts}")
    return counts


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("checkpoint", help="check a signed checkpoint")
    p.add_argument("--key", required=True)
    p.add_argument("--checkpoint", required=True)
    p.set_defaults(run=cmd_checkpoint)
    p = sub.add_parser("inclusion", help="check an event's leaf and inclusion proof against a checkpoint")
    p.add_argument("--key", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--leaf", required=True)
    p.add_argument("--proof", required=True)
    p.set_defaults(run=cmd_inclusion)
    p = sub.add_parser("consistency", help="check that a newer checkpoint extends an older one")
    p.add_argument("--key", required=True)
    p.add_argument("--old", required=True)
    p.add_argument("--new", required=True)
    p.add_argument("--proof", required=True)
    p.set_defaults(run=cmd_consistency)
    p = sub.add_parser("decode-leaf", help="print a leaf's fields")
    p.add_argument("leaf")
    p.set_defaults(run=cmd_decode_leaf)
    p = sub.add_parser("selftest", help="check the Ed25519 and Merkle code against known answers")
    p.set_defaults(run=cmd_selftest)
    p = sub.add_parser("vectors", help="run the transparency-dev inclusion and consistency vectors")
    p.add_argument("dir")
    p.set_defaults(run=cmd_vectors)
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except VerifyError as e:
        print(f"verify.py: NOT VERIFIED: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"verify.py: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

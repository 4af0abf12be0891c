#!/usr/bin/python3
"""Writes the seed corpus of cloak-fuzz-frames (tests/fuzz/corpus/): one connection's byte stream per
file, after a first byte choosing the kernel credentials (see frame_fuzzer.cpp). Rerun after a
protocol change; the files are committed so the fuzz test needs no generator."""
import pathlib
import struct

MAGIC, VERSION = 0x314B4C43, 2
ESTABLISH, CALL, RELEASE, ACCESS_CHECK = 1, 3, 5, 7
PICK = 0x8000      # the fuzzer substitutes a context id the session issued
NO_CREDS = 0x4000  # this frame arrived without credentials
IMPERSONATE, IDENTIFY, ANONYMOUS, DELEGATE = 3, 2, 1, 4


def frame(kind, body, request=1, flags=0, length=None):
    n = len(body) if length is None else length
    return struct.pack("<IBBHII", MAGIC, VERSION, kind, flags, request, n) + body


LOCAL = 1  # the local package


def establish(level=IMPERSONATE, release=0, request=1, flags=0, token=b""):
    return frame(ESTABLISH, struct.pack("<BBBxIQ", level, LOCAL, 0, len(token), release) + token, request, flags)


def call(context=0, level=IMPERSONATE, payload=b"", request=2, flags=0):
    return frame(CALL, struct.pack("<QBxHI", context, level, 0, 0) + payload, request, flags)


def release(context=0, request=3, flags=0):
    return frame(RELEASE, struct.pack("<Q", context), request, flags)


def access(context=0, uid=61000, request=4, flags=0):
    return frame(ACCESS_CHECK, struct.pack("<QII", context, uid, 0), request, flags)


C1 = b"\x00"          # credentials of client 61000
C3 = b"\x04"          # credentials of client 61002
NONE = b"\x01"        # no credentials at all

SEEDS = {
    "establish_call_release": C1 + establish() + call(flags=PICK) + release(flags=PICK),
    "per_message_call": C3 + call(0, IMPERSONATE, b"hello"),
    "access_own_and_other": C1 + establish() + access(uid=61000, flags=PICK) + access(uid=61001, request=5, flags=PICK),
    "identify_access_refused": C1 + establish(IDENTIFY) + access(flags=PICK),
    "anonymous_context": C1 + establish(ANONYMOUS) + call(flags=PICK) + access(flags=PICK),
    "establish_releasing_previous": C1 + establish() + establish(DELEGATE, request=2, flags=PICK) + call(flags=PICK, request=3),
    "no_credentials": NONE + establish() + call(0),
    "frame_without_credentials": C1 + establish(flags=NO_CREDS) + establish(request=2) + call(flags=PICK | NO_CREDS),
    "stale_context": C1 + establish() + release(flags=PICK) + call(flags=PICK, request=9),
    "guessed_context": C1 + establish() + call(0x0123456789ABCDEF) + release(42),
    "bad_level": C1 + establish(level=9) + call(0, level=0),
    "bad_bodies": C1 + frame(ESTABLISH, b"\x03\x00\x00") + frame(CALL, b"") + frame(RELEASE, b"x" * 9) + frame(ACCESS_CHECK, b""),
    "unknown_types": C1 + frame(0, b"") + frame(2, b"\x00" * 24) + frame(15, b"\x00" * 8) + frame(200, b"abc"),
    "bad_magic": C1 + b"XXXX" + frame(CALL, b"")[4:],
    "bad_version": C1 + struct.pack("<IBBHII", MAGIC, 2, CALL, 0, 1, 0),
    "too_large": C1 + struct.pack("<IBBHII", MAGIC, VERSION, CALL, 0, 1, 65537),
    "truncated_body": C1 + frame(CALL, b"\x00" * 16, length=100),
    "truncated_header": C1 + frame(ESTABLISH, b"\x03" + b"\x00" * 15)[:9],
    "large_echo": C1 + call(0, IMPERSONATE, b"\xAA" * 4000),
    "largest_call": C1 + call(0, IMPERSONATE, b"\x55" * (65536 - 16)),
    "many_contexts": C1 + b"".join(establish(request=i) for i in range(40)),
}

if __name__ == "__main__":
    out = pathlib.Path(__file__).resolve().parent / "corpus"
    out.mkdir(exist_ok=True)
    for name, data in SEEDS.items():
        (out / name).write_bytes(data)
    print(f"wrote {len(SEEDS)} seeds to {out}")

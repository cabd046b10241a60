"""What encrypting Temporal payloads costs: AES-256-GCM encrypt and decrypt per payload, by size.

    .venv/bin/python benchmarks/payload_codec.py

Each size runs 5 times; the medians are printed, with the bytes a payload grows by (nonce, tag,
metadata). Keys are random and in memory: nothing is written.
"""

from __future__ import annotations

import os
import statistics
import time

from temporalio.api.common.v1 import Payload

from disputeflow.codec import EncryptionCodec, PayloadKey

SIZES = (512, 6144, 65536)  # an update request is under 1 KB; a case start (its policy pinned) about 6 KB


def main() -> None:
    codec = EncryptionCodec([PayloadKey("k1", os.urandom(32)), PayloadKey("k2", os.urandom(32))])
    for size in SIZES:
        plain = [Payload(metadata={"encoding": b"json/plain"}, data=os.urandom(size))]
        rounds = 200_000 // max(1, size // 512)
        encrypt, decrypt = [], []
        encoded = codec.encode_sync(plain)
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(rounds):
                encoded = codec.encode_sync(plain)
            middle = time.perf_counter()
            for _ in range(rounds):
                codec.decode_sync(encoded)
            ended = time.perf_counter()
            encrypt.append((middle - started) / rounds * 1e6)
            decrypt.append((ended - middle) / rounds * 1e6)
        print(f"{size:>6} B: encrypt {statistics.median(encrypt):.1f} us, decrypt {statistics.median(decrypt):.1f} us "
              f"per payload (median of 5 x {rounds}); +{encoded[0].ByteSize() - plain[0].ByteSize()} B")


if __name__ == "__main__":
    main()

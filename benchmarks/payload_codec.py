"""What encrypting Temporal payloads costs: AES-256-GCM encrypt and decrypt per payload, by size,
with the shared payload key (the baseline) and with a case's own data key (crypto-erasure).

    .venv/bin/python benchmarks/payload_codec.py

Through the codec's async interface, as the SDK calls it. For each size, 5 runs; the medians are
printed, with the bytes a payload grows by (nonce, tag, metadata) and the ratio case key / shared
key measured in the same run. The case key is read from a SQLite database in a temporary folder:
once warm (in memory, as for every payload of a case but the first in a process), and cold (the
cache disabled: one database read per call), and the cost of making a case's key (its first
payload). Keys are random; nothing outside the temporary folder is written.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

from disputeflow.case_keys import CaseKeyStore
from disputeflow.codec import EncryptionCodec, PayloadKey
from disputeflow.db.engine import create_schema, make_engine

SIZES = (512, 6144, 65536)  # an update request is under 1 KB; a case start (its policy pinned) about 6 KB
RUNS = 5


async def _per_payload(codec: EncryptionCodec, plain: list[Payload], rounds: int) -> tuple[float, float, int]:
    """Median µs per payload to encode, to decode; and the bytes it grew by."""
    encoded = await codec.encode(plain)
    encrypt, decrypt = [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(rounds):
            encoded = await codec.encode(plain)
        middle = time.perf_counter()
        for _ in range(rounds):
            await codec.decode(encoded)
        ended = time.perf_counter()
        encrypt.append((middle - started) / rounds * 1e6)
        decrypt.append((ended - middle) / rounds * 1e6)
    return statistics.median(encrypt), statistics.median(decrypt), encoded[0].ByteSize() - plain[0].ByteSize()


async def main() -> None:
    keys = [PayloadKey("k1", os.urandom(32)), PayloadKey("k2", os.urandom(32))]
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{(Path(folder) / 'bench.db').as_posix()}")
        create_schema(engine)
        masters = [(k.id, k.secret) for k in keys]
        shared = EncryptionCodec(keys, case_keys=CaseKeyStore(lambda: engine, masters, ttl=3600))
        case = shared.with_context(WorkflowSerializationContext(namespace="default", workflow_id="case-B-1"))
        cold_store = CaseKeyStore(lambda: engine, masters, ttl=0)
        cold = EncryptionCodec(keys, case_keys=cold_store).with_context(
            WorkflowSerializationContext(namespace="default", workflow_id="case-B-1"))
        print(f"{'size':>7}  {'shared key enc/dec':>19}  {'case key enc/dec':>17}  {'ratio enc/dec':>13}  growth")
        for size in SIZES:
            plain = [Payload(metadata={"encoding": b"json/plain"}, data=os.urandom(size))]
            rounds = 40_000 // max(1, size // 512)
            s_enc, s_dec, s_grow = await _per_payload(shared, plain, rounds)
            c_enc, c_dec, c_grow = await _per_payload(case, plain, rounds)
            print(f"{size:>6}B  {s_enc:>8.1f} / {s_dec:>6.1f} µs  {c_enc:>7.1f} / {c_dec:>5.1f} µs  "
                  f"{c_enc / s_enc:>5.2f} / {c_dec / s_dec:>4.2f}  +{s_grow} / +{c_grow} B")
        plain = [Payload(metadata={"encoding": b"json/plain"}, data=os.urandom(512))]
        c_enc, c_dec, _ = await _per_payload(cold, plain, 300)
        s_enc, s_dec, _ = await _per_payload(shared, plain, 300)
        print(f"cold (a database read per call, 512 B): encode {c_enc:.0f} µs, decode {c_dec:.0f} µs; "
              f"ratio to the shared key {c_enc / s_enc:.0f} / {c_dec / s_dec:.0f}")
        made = []
        for index in range(200):
            bound = shared.with_context(WorkflowSerializationContext(namespace="default", workflow_id=f"case-N-{index}"))
            started = time.perf_counter()
            await bound.encode(plain)
            made.append((time.perf_counter() - started) * 1e6)
        print(f"a case's first payload (its key made and stored): median {statistics.median(made):.0f} µs, "
              f"p90 {sorted(made)[179]:.0f} µs")
        engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())

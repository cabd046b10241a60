"""Seed a database and say how long it took: wall time, this process's CPU time and its worker
processes' (issue 13). The PostgreSQL server's own CPU time is not in it.

    python benchmarks/seed_time.py DATABASE_URL [CASES]

Same data as `disputeflow seed --cases CASES --now 2026-12-02T13:00+08:00` (seed 12348); the
database must hold no cases.
"""

import os
import resource
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from disputeflow.db.engine import create_schema, make_engine  # noqa: E402
from disputeflow.db.seed import seed  # noqa: E402

url, cases = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
engine = make_engine(url)
create_schema(engine)
print("load before", os.getloadavg())
wall, cpu = time.perf_counter(), time.process_time()
report = seed(engine, cases=cases, now=datetime.fromisoformat("2026-12-02T13:00+08:00"))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(report.summary())
print(f"wall {wall:.1f} s, main CPU {cpu:.1f} s, children CPU {children.ru_utime + children.ru_stime:.1f} s; "
      f"load after {os.getloadavg()}")

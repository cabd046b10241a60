"""The year-long compliance reports alone, wall and CPU per call (issue 13).

    python benchmarks/compliance_cpu.py DATABASE_URL [CALLS]

Run from the top of a checkout: the app is imported from the current directory, so the same
script measures another build (e.g. an exported older commit) against the same database, for
interleaved before/after runs. Calls the three routes as a province supervisor (region 37)
through the real app (httpx ASGI transport), 3 warm-up calls then CALLS (default 30); prints the
body's size and hash (two builds must answer the same bytes), wall p50/p95 and the process's CPU
time per call p50/p95 (on PostgreSQL the server's share is not in it), and the load average.
"""

import asyncio
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, os.getcwd())
from api.app import create_app  # noqa: E402
from api.auth import issue_token  # noqa: E402
from disputeflow.settings import Settings  # noqa: E402

ROUTES = [("year by month", "/supervision/compliance?start=2026-01-01&end=2026-12-01&period=month"),
          ("year by week, city", "/supervision/compliance?start=2026-01-01&end=2026-12-01&period=week&group_by=4"),
          ("year CSV", "/supervision/compliance.csv?start=2026-01-01&end=2026-12-01&period=month")]


def _q(xs: list[float], f: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(f * (len(xs) - 1))))]


async def main(url: str, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, database_url=url, data_dir=Path(tmp),
                            temporal_address="127.0.0.1:9",  # never dialled by these routes
                            rate_limit_per_minute=10**6, rate_limit_search_per_minute=10**6,
                            rate_limit_expensive_per_minute=10**6)
        app = create_app(settings)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            token = issue_token(settings, user_id="sup-37", role="supervisor", region="37")
            headers = {"Authorization": f"Bearer {token}"}
            print("load", os.getloadavg())
            for label, path in ROUTES:
                wall, cpu = [], []
                for i in range(3 + calls):
                    started, used = time.perf_counter(), time.process_time()
                    response = await http.get(path, headers=headers)
                    if i >= 3:
                        wall.append((time.perf_counter() - started) * 1000)
                        cpu.append((time.process_time() - used) * 1000)
                    assert response.status_code == 200, response.text[:200]
                digest = hashlib.sha256(response.content).hexdigest()[:12]
                print(f"{label}: {len(response.content)} B sha {digest} wall p50 {_q(wall, .5):.1f} "
                      f"p95 {_q(wall, .95):.1f} | CPU p50 {_q(cpu, .5):.1f} p95 {_q(cpu, .95):.1f}")
            print("load", os.getloadavg())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30))

"""Property-based fuzzing of the API from its own OpenAPI document, as an integrator would do it:
`schemathesis run .../openapi.json --checks all` against the real stack (`python -m
disputeflow.stack`: Temporal dev server, worker, API), once with a token of each role, through the
examples, coverage, fuzzing and stateful phases (the stateful one follows the links from
`POST /cases` into a case's actions). Every check must pass: no 5xx, no response outside its
schema, no status the document does not declare, no schema-valid request refused with a 422, no
schema-invalid one accepted, a correct `Allow` on 405.

Bounded for CI: `FUZZ_MAX_EXAMPLES` examples per operation (default 3) and a fixed seed
(`FUZZ_SEED`), so a run is repeatable; set them higher to look harder locally. A run creates real
cases: the stack is a fresh one in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from disputeflow.settings import Settings
from disputeflow.stack import child_environment
from tests.test_stack import RunningStack, stack_settings, start_stack, stop

BIN = Path(sys.executable).parent
SCHEMATHESIS = shutil.which("schemathesis", path=str(BIN)) or shutil.which("schemathesis")
STACK_START_TIMEOUT_SECONDS = 120
RUN_TIMEOUT_SECONDS = 240
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "3"))
SEED = int(os.environ.get("FUZZ_SEED", "20261202"))
PHASES = "examples,coverage,fuzzing,stateful"

# (user, role, region): one of each role, scoped so that the cases the run registers (POST /cases
# with the document's examples, in 370102 and 370103) are in everyone's sight but the mediator's.
USERS = [
    ("op-fuzz", "operator", "37"),
    ("med-370102-01", "mediator", "370102"),
    ("la-fuzz", "legal_aid_officer", "37"),
    ("sup-fuzz", "supervisor", "37"),
    ("aud-fuzz", "auditor", "37"),
]

pytestmark = [pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (pip install -e '.[test]')"),
              pytest.mark.timeout(STACK_START_TIMEOUT_SECONDS + RUN_TIMEOUT_SECONDS + 60)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, RunningStack]]:
    folder = tmp_path_factory.mktemp("fuzz-stack")
    settings = stack_settings(folder / "data")
    running = start_stack(settings, folder / "stack.log")
    try:
        deadline = time.monotonic() + STACK_START_TIMEOUT_SECONDS
        while True:
            assert running.process.poll() is None, f"the stack exited early:\n{running.output()}"
            try:
                if httpx.get(f"http://127.0.0.1:{settings.api_port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"/health not 200:\n{running.output()}"
            time.sleep(0.5)
        yield settings, running
    finally:
        stop(running)


def token(settings: Settings, user: str, role: str, region: str) -> str:
    """As a person gets one: `disputeflow token`, signed with the stack's key."""
    result = subprocess.run([str(BIN / "disputeflow"), "token", "--user", user, "--role", role, "--region", region],
                            env=child_environment(settings), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def summary(report: dict) -> str:
    failures = ", ".join(f"{f['code']} {f['title']} x{f['count']} ({'; '.join(f['operations'])})"
                         for f in report["failures"])
    return (f"{report['test_cases']['generated']} requests in {report['running_time']:.0f} s; "
            f"failures: {failures or 'none'}; errors: {report['errors'] or 'none'}")


@pytest.mark.parametrize(("user", "role", "region"), USERS, ids=[u[1] for u in USERS])
def test_schemathesis_finds_nothing(stack: tuple[Settings, RunningStack], tmp_path: Path,
                                    user: str, role: str, region: str) -> None:
    settings, running = stack
    report_path = tmp_path / "report.json"
    command = [
        SCHEMATHESIS, "run", f"http://127.0.0.1:{settings.api_port}/openapi.json",
        "--checks", "all", "--phases", PHASES, "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--workers", "1", "--request-timeout", "30", "--no-color",
        "--report", "json", "--report-json-path", str(report_path),
        "-H", f"Authorization: Bearer {token(settings, user, role, region)}",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS,
                            env=os.environ | {"NO_COLOR": "1"})
    print(result.stdout[-20000:])  # shown when the test fails: each failure with its curl to reproduce it
    assert report_path.exists(), f"schemathesis wrote no report:\n{result.stdout}\n{result.stderr}"
    report = json.loads(report_path.read_text())
    print(f"{role}: {summary(report)}")
    assert report["complete"] and report["operations"]["tested"] == report["operations"]["total"] > 40
    assert {name: phase["status"] for name, phase in report["phases"].items()} == dict.fromkeys(
        PHASES.split(","), "success"), summary(report)
    assert report["failures"] == [] and report["errors"] == [], summary(report)
    assert result.returncode == 0, summary(report)
    assert report["test_cases"]["generated"] > 500
    assert running.process.poll() is None, "the stack died under fuzzing"

"""Property-based fuzzing of the API from its own OpenAPI document, as an integrator would do it:
`schemathesis run .../openapi.json --checks all` against the real stack (`python -m
disputeflow.stack`: Temporal dev server, worker, API), once with a token of each role, through the
examples, coverage, fuzzing and stateful phases (the stateful one follows the links from
`POST /cases` into a case's actions). Every check must pass: no 5xx, no response outside its
schema, no status the document does not declare, no schema-valid request refused with a 422, no
schema-invalid one accepted, a correct `Allow` on 405.

Each route is fuzzed with the token of one role that may call it (`ORDER`), so every route is
covered once past its role check and the five runs share the work; that the other roles get 403 is
tests/api/test_roles.py's business.

Bounded for CI: `FUZZ_MAX_EXAMPLES` examples per operation (default 3), `FUZZ_STATEFUL_EXAMPLES`
stateful scenarios (default 10) and a fixed seed (`FUZZ_SEED`), so a run is repeatable; set them
higher to look harder locally. A run creates real cases: the stack is a fresh one in a temporary
folder.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import create_app
from api.auth import api_routes
from disputeflow.domain.enums import Role
from disputeflow.settings import Settings
from disputeflow.stack import child_environment
from tests.test_stack import RunningStack, stack_settings, healthy_stack

BIN = Path(sys.executable).parent
SCHEMATHESIS = shutil.which("schemathesis", path=str(BIN)) or shutil.which("schemathesis")
STACK_START_TIMEOUT_SECONDS = 120
RUN_TIMEOUT_SECONDS = 300
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "3"))
STATEFUL_EXAMPLES = int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", "10"))
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
    # The per-user rate limits (429) would otherwise answer most of the fuzzer's requests, which
    # then never reach the routes; that they hold is tests/api's business.
    # Forecasts are fuzzed like every route, but each accepted one runs a real simulation in the API
    # process: a small cap keeps each to seconds (a bigger body answers 409, which the document says).
    settings = stack_settings(folder / "data").model_copy(update=dict.fromkeys(
        ("rate_limit_per_minute", "rate_limit_search_per_minute", "rate_limit_expensive_per_minute"), 1_000_000)
        | {"forecast_max_cases": 30})
    with healthy_stack(settings, folder / "stack.log", STACK_START_TIMEOUT_SECONDS) as running:
        yield settings, running


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


CONFIG = f"""
[generation]
max-examples = {MAX_EXAMPLES}

[phases.stateful]
max-steps = 8

[phases.stateful.generation]
max-examples = {STATEFUL_EXAMPLES}
"""


# Each route is fuzzed with the token of the first of these roles that may call it, so that every
# route is covered once with a token that gets past the role check, and each role's run is its
# share. Each also reads cases (the supervisor registers them too), so that its stateful walks find
# real cases for the actions only it may take.
APP = create_app()
ORDER = ["operator", "mediator", "legal_aid_officer", "auditor", "supervisor"]
READ = {"list_cases", "get_case"}
ALSO = {"mediator": READ, "legal_aid_officer": READ, "auditor": READ, "supervisor": READ | {"register_case"}}


@functools.cache
def operations_of(role: str) -> list[str]:
    """The operation ids fuzzed with `role`'s token (that the other roles get 403 on them is
    tests/api/test_roles.py's business)."""
    app = APP
    document = app.openapi()
    ids = {(method.upper(), path): op["operationId"] for path, item in document["paths"].items()
           for method, op in item.items()}
    share = []
    for route in api_routes(app):
        operation = ids.get((route.method, route.path))
        if operation is None:
            continue
        allowed = [r for r in ORDER if route.roles is None or Role(r) in route.roles]
        if allowed[0] == role or operation in ALSO.get(role, ()):
            share.append(operation)
    assert share, role
    return share


@pytest.mark.parametrize(("user", "role", "region"), USERS, ids=[u[1] for u in USERS])
def test_schemathesis_finds_nothing(stack: tuple[Settings, RunningStack], tmp_path: Path,
                                    user: str, role: str, region: str) -> None:
    settings, running = stack
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    report_path = tmp_path / "report.json"
    command = [
        SCHEMATHESIS, "--config-file", str(config), "--no-color", "run",
        f"http://127.0.0.1:{settings.api_port}/openapi.json",
        "--checks", "all", "--phases", PHASES, "--seed", str(SEED), "--workers", "1", "--request-timeout", "30",
        "--report", "json", "--report-json-path", str(report_path),
        "-H", f"Authorization: Bearer {token(settings, user, role, region)}",
    ]
    for operation in operations_of(role):
        command += ["--include-operation-id", operation]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS,
                            env=os.environ | {"NO_COLOR": "1"})
    print(result.stdout[-20000:])  # shown when the test fails: each failure with its curl to reproduce it
    assert report_path.exists(), f"schemathesis wrote no report:\n{result.stdout}\n{result.stderr}"
    report = json.loads(report_path.read_text())
    print(f"{role}: {summary(report)}")
    assert report["complete"] and report["operations"]["tested"] == report["operations"]["selected"] \
        == len(operations_of(role))
    assert {name: phase["status"] for name, phase in report["phases"].items()} == dict.fromkeys(
        PHASES.split(","), "success"), summary(report)
    assert report["failures"] == [] and report["errors"] == [], summary(report)
    assert result.returncode == 0, summary(report)
    assert report["test_cases"]["generated"] > 100
    assert running.process.poll() is None, "the stack died under fuzzing"
    throttled = running.output().count('" 429 ')
    assert throttled == 0, f"{throttled} requests were rate-limited: the run did not reach the routes"


def test_the_stateful_phase_follows_the_links_from_registration() -> None:
    """The links from POST /cases are what lets the stateful phase walk a case: they must name
    operations the document has, with the case number from the answer."""
    document = APP.openapi()
    operations = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    links = document["paths"]["/cases"]["post"]["responses"]["201"]["links"]
    assert {"get_case", "act_answer_consultation", "act_send_to_mediation", "act_withdraw"} <= set(links)
    for link in links.values():
        assert link["operationId"] in operations
        assert link["parameters"] == {"case_id": "$response.body#/case_id"}


def test_every_operation_is_fuzzed_by_some_role() -> None:
    document = APP.openapi()
    every = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    covered = {operation for role in ORDER for operation in operations_of(role)}
    assert covered == every

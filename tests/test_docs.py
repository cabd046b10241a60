"""The documentation is checked like code: README.md, docs/*.md and benchmarks/*.md.

- Every relative link resolves: the file exists and a `#anchor` matches a heading of that file.
- Every path in backticks that names a file of this repository (`disputeflow/...`, `tests/...`)
  exists, and every `disputeflow ...` command named in running text parses.
- Fenced code blocks, by their info string:
  - ```sh          run with bash in a fresh data folder (its own SQLite database and token key),
                   from the top of the repository; they must exit 0;
  - ```sh stack    run against a whole stack, `python -m disputeflow.stack` as `make run` starts it,
                   on free ports (127.0.0.1:8000 and :8233 in the text are rewritten to them). A
                   line that prints a status code (`-w '%{http_code}'`) is held against the status
                   codes named in the comments of the block, in order;
  - ```sh no-check: <why>   not run; the reason is required;
  - ```toml        loaded by the policy loader, as a fragment of a policy file.
  `.venv/bin/` in a command means the environment running these tests. A block that dies of the
  known Temporal-client crash at interpreter exit (see `run_block`) is run once more.
- The tables that mirror the code are compared with it: the deadlines and other numbers in
  docs/process.md with disputeflow/data/policy.toml, the actions with `lifecycle.RULES`, the routes
  in docs/api.md with the app's routes, the configuration in docs/operations.md with `Settings`.
- No file refers to documents this repository does not have.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import AliasChoices

from disputeflow.domain.lifecycle import OPEN_STAGES, RULES
from disputeflow.domain.policy import DEFAULT_POLICY_PATH, PolicyTable, load_policy
from disputeflow.settings import Settings
from disputeflow.stack import child_environment
from tests.conftest import IN_CI
from tests.test_stack import RunningStack, stack_settings, healthy_stack

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks").glob("*.md"))]
BIN = Path(sys.executable).parent  # not resolved: a virtual environment's python is a symlink
README_MAX_LINES = 120
COMMAND_TIMEOUT_SECONDS = 120
STACK_START_TIMEOUT_SECONDS = 60
REPO_DIRS = ("disputeflow/", "api/", "workflows/", "activities/", "tests/", "benchmarks/", "docs/")
# Spelled in pieces so that this file does not match itself.
KNOWN_EXIT_CRASH = "Fatal Python error: PyGILState_Release"
MISSING_DOCUMENTS = ("DOMAIN" + ".md", "TEMPORAL-NOTES" + ".md", "STYLE" + ".md", "../" + "shared")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- Reading markdown ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    tag: str  # "", "stack", "no-check"
    reason: str
    text: str

    @property
    def id(self) -> str:
        return f"{rel(self.path)}:{self.line}"


FENCE = re.compile(r"^```(\S*)\s*(.*)$")


def blocks(path: Path) -> list[Block]:
    found, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        lang, info = opening.groups()
        tag, _, reason = info.partition(":")
        body, j = [], i + 1
        while j < len(lines) and lines[j] != "```":
            body.append(lines[j])
            j += 1
        assert j < len(lines), f"{rel(path)}:{i + 1}: code block never closed"
        found.append(Block(path, i + 1, lang, tag.strip(), reason.strip(), "\n".join(body) + "\n"))
        i = j + 1
    return found


def prose(path: Path) -> str:
    """The text outside code blocks and code spans: where links are links."""
    text = re.sub(r"^```.*?^```$", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def prose_with_code_spans(path: Path) -> str:
    """The text outside code blocks."""
    return re.sub(r"^```.*?^```$", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    heading = re.sub(r"`", "", heading.strip()).lower()
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```$", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


def table(path: Path, heading: str) -> list[list[str]]:
    """The rows (cells stripped, header and rule left out) of the first table under `heading`."""
    text = path.read_text(encoding="utf-8")
    start = re.search(rf"^#+ {re.escape(heading)}\s*$", text, flags=re.M)
    assert start, f"{rel(path)} has no heading {heading!r}"
    rows = []
    for line in text[start.end():].splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
        elif line.startswith("#"):
            break
    assert len(rows) > 2, f"{rel(path)}: no table under {heading!r}"
    return rows[2:]


def code(cell: str) -> str:
    return cell.strip().strip("`")


# -- Links, paths, references ----------------------------------------------------------------------


def test_there_are_docs_to_check() -> None:
    names = {rel(p) for p in DOCS}
    assert {"README.md", "docs/process.md", "docs/architecture.md", "docs/operations.md", "docs/api.md",
            "docs/versioning.md", "docs/data-protection.md", "docs/audit.md", "benchmarks/RESULTS.md"} <= names


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(path)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor} in {resolved.name}")
        elif ROOT not in resolved.parents and resolved != ROOT:
            broken.append(f"{target}: outside the repository")
    assert not broken, f"{rel(path)}: " + "; ".join(broken)


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_repository_paths_in_backticks_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    spans = re.findall(r"`([^`\s]+)`", text)
    missing = [s for s in spans
               if s.startswith(REPO_DIRS) and not re.search(r"[<>{}*$]", s) and not (ROOT / s).exists()]
    assert not missing, f"{rel(path)} names files that do not exist: {missing}"


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_commands_named_in_the_text_exist(path: Path) -> None:
    """`disputeflow ...` in running text (not in a block): the subcommand exists and, where options
    are given, the command line parses (placeholders such as CASE stand for any value)."""
    import click

    from disputeflow import cli

    subcommands = cli.commands()
    for span in re.findall(r"`(?:\.venv/bin/)?disputeflow ([^`]+)`", prose_with_code_spans(path)):
        argv = shlex.split(span.replace("[", "").replace("]", ""))
        assert argv[0] in subcommands, f"{rel(path)}: `disputeflow {span}`: no such command"
        if len(argv) > 1:
            try:
                cli.check(argv)
            except click.ClickException as error:
                pytest.fail(f"{rel(path)}: `disputeflow {span}` does not parse: {error.format_message()}")


def test_nothing_refers_to_documents_this_repository_does_not_have() -> None:
    found = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if (not path.is_file() or parts[0].startswith(".") or parts[0] in ("var", "build")
                or "egg-info" in parts[0] or "__pycache__" in parts or path == Path(__file__)
                or path.suffix not in (".py", ".md", ".toml", ".json", ".cfg", ".txt", ".ini", "")):
            continue
        if parts[:2] == ("tests", "histories"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{rel(path)}: {name}" for name in MISSING_DOCUMENTS if name in text]
    assert not found


def test_readme_is_short_and_has_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make run" in text and "make test" in text


# -- Code blocks -----------------------------------------------------------------------------------

ALL_BLOCKS = [b for path in DOCS for b in blocks(path)]
SH_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "sh" and b.tag == ""]
STACK_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "sh" and b.tag == "stack"]
TOML_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "toml"]


def test_every_shell_block_is_run_or_says_why_not() -> None:
    for b in ALL_BLOCKS:
        if b.lang in ("sh", "bash", "shell", "console"):
            assert b.lang == "sh", f"{b.id}: tag shell blocks ```sh, so that they are checked"
            assert b.tag in ("", "stack", "no-check"), f"{b.id}: unknown tag {b.tag!r}"
            assert b.tag != "no-check" or b.reason, f"{b.id}: ```sh no-check: needs a reason after the colon"
    assert SH_BLOCKS and STACK_BLOCKS


def require_tools(block: Block) -> None:
    """The docs use curl and jq besides the project's own commands. Where one is missing the block
    is skipped, except under CI=true, where that fails (as with Chromium for the browser test)."""
    missing = [tool for tool in ("curl", "jq") if re.search(rf"\b{tool}\b", block.text) and not shutil.which(tool)]
    if missing:
        message = f"{block.id} needs {', '.join(missing)}, which is not installed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def run_block(block: Block, env: dict[str, str], replacements: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    require_tools(block)
    script = block.text.replace(".venv/bin/", f"{BIN}/")
    for old, new in (replacements or {}).items():
        script = script.replace(old, new)
    env = env | {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    for _attempt in range(2):
        result = subprocess.run(["bash", "-e", "-u", "-o", "pipefail", "-c", script], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
        # A known crash, not a docs problem: a `disputeflow` command that used a Temporal client now
        # and then aborts (SIGABRT, exit 134) while the interpreter shuts down, after it has done
        # its work (temporalio/sdk-python#300). Run such a block once more; any other failure fails.
        if not (result.returncode == 134 and KNOWN_EXIT_CRASH in result.stderr):
            break
    print(f"--- {block.id}\n{result.stdout}{result.stderr}")  # shown with -s, or when a later check fails
    assert result.returncode == 0, (f"{block.id} exited {result.returncode}\n--- script\n{script}"
                                    f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}")
    return result


def fresh_environment(data_dir: Path) -> dict[str, str]:
    """This machine's environment with every setting explicit: a new data folder, SQLite in it, the
    embedded Temporal's defaults; nothing from the host's configuration."""
    return child_environment(Settings(_env_file=None, data_dir=data_dir))


@pytest.mark.parametrize("block", SH_BLOCKS, ids=lambda b: b.id)
def test_shell_block_runs(block: Block, tmp_path: Path) -> None:
    run_block(block, fresh_environment(tmp_path / "data"))


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=lambda b: b.id)
def test_toml_block_is_a_valid_policy_fragment(block: Block, tmp_path: Path) -> None:
    head = 'version = "docs"\n' + ("" if re.search(r"^\[\[clocks\]\]", block.text, flags=re.M) else "clocks = []\n")
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(head + block.text, encoding="utf-8")
    load_policy(policy_file)


# -- The stack -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, RunningStack]]:
    folder = tmp_path_factory.mktemp("docs-stack")
    settings = stack_settings(folder / "data")
    with healthy_stack(settings, folder / "stack.log", STACK_START_TIMEOUT_SECONDS) as running:
        yield settings, running


@pytest.mark.parametrize("block", STACK_BLOCKS, ids=lambda b: b.id)
def test_stack_block_runs(block: Block, stack: tuple[Settings, RunningStack]) -> None:
    settings, _ = stack
    result = run_block(block, child_environment(settings), {
        "127.0.0.1:8000": f"127.0.0.1:{settings.api_port}",
        "127.0.0.1:8233": f"127.0.0.1:{settings.temporal_ui_port}",
        "127.0.0.1:9464": f"127.0.0.1:{settings.api_metrics_port}",
        "127.0.0.1:9465": f"127.0.0.1:{settings.worker_metrics_port}",
    })
    if "%{http_code}" in block.text:
        comments = " ".join(line.partition("#")[2] for line in block.text.splitlines()
                            if "#" in line and "%{http_code}" not in line.partition("#")[2])
        expected = re.findall(r"\b[1-5]\d\d\b", comments)
        printed = [line for line in result.stdout.split() if re.fullmatch(r"[1-5]\d\d", line)]
        assert printed == expected, f"{block.id}: status codes {printed}, the comments say {expected}"


# -- Tables that mirror the code -------------------------------------------------------------------

SHIPPED = load_policy(DEFAULT_POLICY_PATH)


def _percentages(fractions: list[float]) -> str:
    return ", ".join(f"{f * 100:g}%" for f in fractions) or "none"


def test_deadline_table_is_the_policy_file() -> None:
    assert all(not region.clocks for region in SHIPPED.regions.values()), \
        "the policy has regional clock rules: document them in docs/process.md and check them here"
    expected = []
    for rule in SHIPPED.clocks:
        conditions = [str(v) for values in rule.when.model_dump(mode="json").values() for v in values]
        expected.append([f"`{rule.clock}`", rule.stage.value, ", ".join(conditions) or "every case", str(rule.target),
                         _percentages(rule.warnings), ", ".join(a.value for a in rule.on_breach), rule.source])
    documented = table(ROOT / "docs" / "process.md", "Deadlines")
    assert Counter(map(tuple, documented)) == Counter(map(tuple, expected))


def _setting(policy: PolicyTable, path: str) -> str:
    value: object = policy
    for part in re.findall(r'"[^"]+"|[^.]+', path):
        key = part.strip('"')
        value = value[key] if isinstance(value, dict) else getattr(value, key)
    if isinstance(value, list):
        return ", ".join(str(getattr(v, "value", v)) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_other_policy_numbers_are_the_policy_file() -> None:
    rows = table(ROOT / "docs" / "process.md", "Other numbers in the policy")
    documented = {code(name): value for name, value, *_ in rows}
    for name, value in documented.items():
        assert _setting(SHIPPED, name) == value, f"{name}: the policy says {_setting(SHIPPED, name)}, the docs {value}"
    every = {f"{section}.{field}" for section in ("mediation", "legal_aid", "follow_up")
             for field in type(getattr(SHIPPED, section)).model_fields}
    every |= {"max_history_events"}
    every |= {f'regions."{code_}".legal_aid_income_threshold' for code_, region in SHIPPED.regions.items()
              if region.legal_aid_income_threshold is not None}
    assert every <= set(documented), f"not documented: {sorted(every - set(documented))}"


def test_actions_table_is_lifecycle_rules() -> None:
    expected = []
    for command, (stages, roles, _what) in RULES.items():
        where = "any open stage" if stages == OPEN_STAGES else ", ".join(sorted(s.value for s in stages))
        expected.append([f"`{command}`", where, ", ".join(sorted(r.value for r in roles))])
    assert table(ROOT / "docs" / "process.md", "Who may do what") == expected


def test_routes_table_is_the_app() -> None:
    from api.app import create_app
    from api.auth import PUBLIC_PATHS, api_routes

    expected = []
    for route in api_routes(create_app()):
        if route.path in PUBLIC_PATHS and route.path != "/health":
            continue  # the docs pages
        roles = ", ".join(sorted(r.value for r in route.roles)) if route.roles else "public"
        expected.append([route.method, f"`{route.path}`", roles])
    assert table(ROOT / "docs" / "api.md", "Roles") == expected


def test_configuration_table_is_settings() -> None:
    variables = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices)
        variables.add(alias.choices[0])
    documented = {code(row[0]) for row in table(ROOT / "docs" / "operations.md", "Configuration")}
    assert documented == variables


def test_readme_first_case_is_run_against_the_stack() -> None:
    (first_case,) = [b for b in STACK_BLOCKS if rel(b.path) == "README.md"]
    assert "/cases" in first_case.text and "token" in first_case.text



def test_metrics_table_is_the_code(tmp_path: Path) -> None:
    from disputeflow import metrics
    from disputeflow.db.engine import create_schema, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    create_schema(engine)
    names = set()
    collector = metrics.ReadModelCollector(lambda: engine, cache_seconds=0)
    for family in [*metrics.REGISTRY.collect(), *collector.collect()]:
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    engine.dispose()
    documented = {code(row[0]) for row in table(ROOT / "docs" / "operations.md", "Metrics")}
    assert documented == names

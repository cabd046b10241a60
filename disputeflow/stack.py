"""Run the whole stack on one machine: `python -m disputeflow.stack` (what `make run` calls).

Starts, in this order, the Temporal dev server (unless TEMPORAL_ADDRESS names a cluster), the
worker and the API, each in its own process group with the same environment. Ctrl-C or SIGTERM
stops them in reverse order (API, worker, dev server): SIGTERM, then SIGKILL after a grace period
(the worker's is longer: its activities may run to the end, see `worker_grace_seconds`; a second
Ctrl-C skips the wait). If one of them dies, the others are stopped and the exit code
is non-zero. Everything persists in the data folder, so the next run carries on where this one
stopped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import AliasChoices, SecretStr
from sqlalchemy.engine import make_url

from disputeflow.settings import Settings, get_settings
from disputeflow.temporal import connect, search_attribute_flags

GRACE_SECONDS = 10.0
STOP_NOTICE_AFTER_SECONDS = 2.0
# After its activities' grace period the worker cancels what still runs and reports it: allow that.
WORKER_STOP_MARGIN_SECONDS = 10.0
TEMPORAL_START_TIMEOUT_SECONDS = 30.0
API_START_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.1


class StackError(Exception):
    """The stack cannot start or keep running; the message says why."""


class Child:
    """One process of the stack, the leader of its own process group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], grace: float = GRACE_SECONDS) -> None:
        self.name = name
        self.grace = grace  # how long it may take to stop after SIGTERM before it is killed
        self.process = subprocess.Popen(argv, env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        return self.process.poll()

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):  # the group is gone already
            pass


def temporal_binary() -> str:
    """The `temporal` CLI installed with the project (next to this Python), else one on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise StackError(
            "the `temporal` CLI was not found: install the project (`make run` does), "
            "or set TEMPORAL_ADDRESS to use a running Temporal cluster"
        )
    return found


def child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment plus every setting as its environment variable, paths absolute,
    so that the children see exactly the configuration this process resolved."""
    env = dict(os.environ)
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        var = alias.choices[0] if isinstance(alias, AliasChoices) else (alias or name).upper()
        value = getattr(settings, name)
        if value is None:
            env.pop(var, None)
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = value.resolve()
        env[var] = str(value)
    env["PYTHONUNBUFFERED"] = "1"  # the children's logs appear as they happen
    return env


def temporal_dev_server_argv(settings: Settings) -> list[str]:
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(settings.temporal_db_file),
        # WAL lets readers work while the dev server writes its SQLite file: roughly double the throughput.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--port",
        str(settings.temporal_dev_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--ip",
        "127.0.0.1",
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        # The Web UI decrypts payloads through the API's codec endpoint (auditors and supervisors).
        "--ui-codec-endpoint",
        codec_endpoint(settings),
        *search_attribute_flags(),
    ]


def codec_endpoint(settings: Settings) -> str:
    """The API's codec endpoint as a browser on this machine reaches it."""
    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}/codec"


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could bind host:port now (SO_REUSEADDR, as servers do: TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def worker_grace_seconds(settings: Settings) -> float:
    """How long the stack waits for the worker after SIGTERM: the activities' grace period
    (DISPUTEFLOW_WORKER_SHUTDOWN_GRACE_SECONDS), then time to cancel the rest and report it."""
    return max(GRACE_SECONDS, settings.worker_shutdown_grace_seconds + WORKER_STOP_MARGIN_SECONDS)


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


async def _temporal_answers(settings: Settings) -> bool:
    try:
        await asyncio.wait_for(connect(settings), 2.0)
    except Exception:  # noqa: BLE001 - not ready yet
        return False
    return True


def _say_from_handler(message: str) -> None:
    # print() is not reentrant: a signal arriving during a print would fail in a handler's print.
    os.write(sys.stderr.fileno(), f"\ndisputeflow: {message}\n".encode())


class Stack:
    def __init__(self, settings: Settings) -> None:
        # Absolute from here on: the children, the dev server's file and the banner agree.
        self.settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
        self.children: list[Child] = []
        self.stop_requested = False
        self.stopping = False
        self.kill_now = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Only take note: the main loop does the stopping, so no Popen is ever left half done.
        if self.stop_requested or self.stopping:
            self.kill_now = True
            _say_from_handler("stopping now, without waiting")
        else:
            self.stop_requested = True
            _say_from_handler(f"{signal.Signals(signum).name} received, stopping (again to stop at once)...")

    # -- running ----------------------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        try:
            self._start()
            if not self.stop_requested:
                self._print_banner()
                self._watch()
            code = 0
        except StackError as exc:
            print(f"disputeflow: {exc}", file=sys.stderr)
            code = 1
        finally:
            self._stop_all()
        print("disputeflow: stopped." + (f" Data kept in {self.settings.data_dir}" if code == 0 else ""))
        return code

    def _start(self) -> None:
        settings = self.settings
        worker_script = Path("worker.py")
        if not worker_script.exists():
            raise StackError(f"worker.py not found in {Path.cwd()}: run from the project root (`make run` does)")
        self._check_ports_free()
        if not settings.data_dir.exists():  # the cases' data and keys: the owner's alone
            settings.data_dir.mkdir(mode=0o700, parents=True)
        env = child_environment(settings)

        if settings.embedded_temporal:
            self._spawn("the Temporal dev server", temporal_dev_server_argv(settings), env)
            self._wait_until(
                lambda: port_accepts("127.0.0.1", settings.temporal_dev_port)
                and asyncio.run(_temporal_answers(settings)),
                TEMPORAL_START_TIMEOUT_SECONDS,
                f"the Temporal dev server did not answer on {settings.effective_temporal_address}",
            )
            if self.stop_requested:
                return
        self._spawn("the worker", [sys.executable, str(worker_script)], env, grace=worker_grace_seconds(settings))
        self._spawn(
            "the API",
            [
                sys.executable, "-m", "uvicorn", "api.app:app",
                "--host", settings.api_host, "--port", str(settings.api_port),
            ],
            env,
        )
        self._wait_until(
            lambda: port_accepts(_client_host(settings.api_host), settings.api_port),
            API_START_TIMEOUT_SECONDS,
            f"the API did not open port {settings.api_port}",
        )

    def _check_ports_free(self) -> None:
        """Fail fast on a taken port: otherwise the readiness check could find someone else's server."""
        wanted = [("API", self.settings.api_host, self.settings.api_port, "DISPUTEFLOW_API_PORT")]
        if self.settings.embedded_temporal:
            wanted += [
                ("Temporal dev server", "127.0.0.1", self.settings.temporal_dev_port, "TEMPORAL_DEV_PORT"),
                ("Temporal Web UI", "127.0.0.1", self.settings.temporal_ui_port, "TEMPORAL_UI_PORT"),
            ]
        for what, host, port, var in wanted:
            if not port_is_free(host, port):
                raise StackError(f"port {port} ({what}) is already in use on {host}: stop what holds it, or set {var}")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], grace: float = GRACE_SECONDS) -> Child:
        child = Child(name, argv, env, grace)
        self.children.append(child)
        return child

    def _dead_child(self) -> Child | None:
        return next((child for child in self.children if child.exited() is not None), None)

    def _wait_until(self, ready: Callable[[], bool], timeout: float, failure: str) -> None:
        deadline = time.monotonic() + timeout
        while not self.stop_requested:
            dead = self._dead_child()
            if dead is not None:
                raise StackError(f"{dead.name} exited with code {dead.exited()} while starting")
            if ready():
                return
            if time.monotonic() > deadline:
                raise StackError(f"{failure} within {timeout:g} s")
            time.sleep(POLL_SECONDS)

    def _watch(self) -> None:
        while not self.stop_requested:
            dead = self._dead_child()
            if dead is not None:
                raise StackError(f"{dead.name} exited unexpectedly with code {dead.exited()}; stopping the others")
            time.sleep(POLL_SECONDS * 2)

    def _stop_all(self) -> None:
        """Reverse start order: the API stops taking requests before the worker and Temporal go."""
        self.stopping = True
        for child in reversed(self.children):
            if child.exited() is None:
                child.signal_group(signal.SIGTERM)
                signalled = time.monotonic()
                told = False
                while child.exited() is None and time.monotonic() < signalled + child.grace and not self.kill_now:
                    if not told and time.monotonic() - signalled > STOP_NOTICE_AFTER_SECONDS:
                        told = True  # say why nothing seems to happen (the worker finishing its activities)
                        print(f"disputeflow: waiting up to {child.grace:g} s for {child.name} to stop"
                              " (Ctrl-C again to stop at once)")
                    time.sleep(POLL_SECONDS)
                if child.exited() is None:
                    if not self.kill_now:
                        print(f"disputeflow: {child.name} did not stop within {child.grace:g} s; killing it")
                    child.signal_group(signal.SIGKILL)
                child.process.wait()
            # Anything the leader left behind in its group goes too: no orphans.
            child.signal_group(signal.SIGKILL)

    def _print_banner(self) -> None:
        s = self.settings
        host = _client_host(s.api_host)
        lines = [
            "",
            "disputeflow is running. Ctrl-C stops everything.",
            f"  Console          http://{host}:{s.api_port}/console/   (open this: sign in and work)",
            f"  API docs         http://{host}:{s.api_port}/docs",
        ]
        if s.embedded_temporal:
            lines.append(f"  Temporal Web UI  http://127.0.0.1:{s.temporal_ui_port}")
        else:
            lines.append(f"  Temporal         {s.temporal_address} (namespace {s.temporal_namespace})")
        lines += [
            f"  Data folder      {s.data_dir}",
            f"  Database         {make_url(s.effective_database_url).render_as_string(hide_password=True)}",
            "",
        ]
        print("\n".join(lines))


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # the banner and notices show up at once, even in a pipe
    return Stack(get_settings()).run()


if __name__ == "__main__":
    sys.exit(main())

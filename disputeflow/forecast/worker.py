"""A forecast's workflow worker, in a process of its own.

A forecast's Python work is the driver (the simulated people, their updates), the stand-in
activities and the real `CaseWorkflowV2`'s workflow tasks; in one process they take turns at one
GIL, on one core, while the test server uses the other. Here the workflow tasks run in a child
process, on the forecast's private test server and task queue (never the real ones), so that
both cores work. The parent keeps the driver and the stand-ins (they share the simulated world).
It is an option (`Simulation(worker_process=True)`), not the default: side by side with one
process at 1,000 cases it was faster in some runs and not in others, and it cost 20-30% more CPU
in all (a second SDK worker, the test server's extra polls), which a machine others keep busy
pays for (measured in benchmarks/RESULTS.md).

Whichever process runs the workflows, `data_converter` below serves the forecast.

    python -m disputeflow.forecast.worker TARGET TASK_QUEUE MAX_CACHED [--sandboxed]

It prints `ready` once polling, and stops when its standard input closes (the parent ended,
however it ended) or on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading

import temporalio.bridge.worker as _bridge
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter
from temporalio.converter._extstore import StorageOperationMetrics
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter, made once per process.

    The SDK gives each workflow activation a data converter with its serialization context, and
    each such copy constructs a new payload converter (then puts the original back in its place):
    a new converter with an empty cache of type adapters, for nothing, thousands of times a
    forecast. This class hands out its one instance instead; it holds no per-context state.
    """

    _one: SharedPydanticPayloadConverter | None = None

    def __new__(cls) -> SharedPydanticPayloadConverter:
        if cls._one is None:
            cls._one = super().__new__(cls)
            PydanticPayloadConverter.__init__(cls._one)
        return cls._one

    def __init__(self) -> None:  # made once, in __new__
        pass


data_converter = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)


def _identity_visits(converter: DataConverter) -> bool:
    """Whether the SDK's walks over an activation's or a completion's payloads change nothing: the
    forecast's converter, which has no payload codec and no external storage."""
    return (converter.payload_converter_class is SharedPydanticPayloadConverter
            and converter.payload_codec is None and getattr(converter, "external_storage", None) is None)


def _skip_identity_visits() -> None:
    """Skip the SDK's payload walks for the forecast's workflow tasks, where they change nothing.

    For every workflow activation and every completion the SDK walks all payloads three times (the
    payload codec, external storage, the codec of storage references), each payload with its own
    serialization context, even without a codec or storage: a sixth of the forecast's Python CPU
    in a profile (`benchmarks/RESULTS.md`). With the forecast's converter each walk hands every
    payload back unchanged (the only other thing it does: refuse a payload stored externally,
    which nothing on the forecast's private test server writes). Any other converter (the real
    worker's, with its encryption codec) is walked as before. Wraps the module's functions, which
    the SDK's workflow worker looks up at each call; tests/forecast/test_worker.py fails if they move.
    """
    decode, encode = _bridge.decode_activation, _bridge.encode_completion
    if getattr(decode, "forecast_wrapper", False):
        return

    async def decode_activation(activation, data_converter, *args, **kwargs):  # noqa: ANN001, ANN202
        if _identity_visits(data_converter):
            return StorageOperationMetrics()
        return await decode(activation, data_converter, *args, **kwargs)

    async def encode_completion(completion, data_converter, *args, **kwargs):  # noqa: ANN001, ANN202
        if _identity_visits(data_converter):
            return StorageOperationMetrics()
        return await encode(completion, data_converter, *args, **kwargs)

    decode_activation.forecast_wrapper = encode_completion.forecast_wrapper = True  # type: ignore[attr-defined]
    _bridge.decode_activation, _bridge.encode_completion = decode_activation, encode_completion


_skip_identity_visits()


# Few workflow-task slots, activations on the event loop's thread (no deadlock timer): see the
# notes in `disputeflow.forecast.simulation`.
WORKFLOW_TASKS = 16


def worker(client: Client, task_queue: str, max_cached: int, *, sandboxed: bool = False,
           workflow_tasks: int = WORKFLOW_TASKS, inline: bool = True) -> Worker:
    """The worker running the real case workflow for a forecast (in this process or a child)."""
    from workflows.case import CaseWorkflowV2

    if sandboxed:
        from worker import workflow_runner

        runner = workflow_runner()
    else:
        runner = UnsandboxedWorkflowRunner()
    return Worker(client, task_queue=task_queue, workflows=[CaseWorkflowV2], workflow_runner=runner,
                  max_cached_workflows=max_cached, max_concurrent_workflow_tasks=workflow_tasks,
                  debug_mode=inline)


async def serve(target: str, task_queue: str, max_cached: int, sandboxed: bool) -> None:
    # A year without the State Council's schedule warns once per workflow; the parent says it once.
    logging.getLogger("temporalio.workflow").setLevel(logging.ERROR)
    client = await Client.connect(target, data_converter=data_converter)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at end of file: the parent closed the pipe or is gone
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    async with worker(client, task_queue, max_cached, sandboxed=sandboxed):
        print("ready", flush=True)
        os.dup2(2, 1)  # nothing more on the pipe, which nobody reads from now on
        await stop.wait()


def main(argv: list[str]) -> int:
    target, task_queue, max_cached = argv[:3]
    asyncio.run(serve(target, task_queue, int(max_cached), "--sandboxed" in argv[3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The grader's kernel client is ready as soon as a real kernel answers, and says so when the kernel is dead.

jupyter_client's own wait sleeps 0.2 s at least twice per kernel; ``PromptKernelClient`` waits for the idle status
of its own ``kernel_info`` request instead. Real ipykernel processes, no sandbox.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from jupyter_client.manager import KernelManager

from grading.instructor.kernels import PromptKernelClient

pytestmark = pytest.mark.slow  # starts kernels


@pytest.fixture
def kernel():
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
    yield manager
    manager.shutdown_kernel(now=True)


def _client(manager: KernelManager) -> PromptKernelClient:
    client = PromptKernelClient()
    client.load_connection_info(manager.get_connection_info())
    client.alive = manager.is_alive
    client.start_channels()
    return client


def test_ready_when_the_kernel_answers_and_then_runs_code(kernel):
    client = _client(kernel)
    try:
        asyncio.run(client.wait_for_ready(timeout=60))
        asyncio.run(client.wait_for_ready(timeout=60))  # asked again: answered again, nothing left unread

        async def run() -> list[dict]:
            msg_id = client.execute("print(6 * 7)")
            outputs = []
            while True:
                msg = await client.get_iopub_msg(timeout=30)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                outputs.append(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return outputs

        streams = [m["content"]["text"] for m in asyncio.run(run()) if m["msg_type"] == "stream"]
        assert streams == ["42\n"]
    finally:
        client.stop_channels()


def test_a_dead_kernel_is_reported_not_waited_for(kernel):
    client = _client(kernel)
    kernel.shutdown_kernel(now=True)
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="died"):
            asyncio.run(client.wait_for_ready(timeout=60))
        assert time.monotonic() - started < 30
    finally:
        client.stop_channels()


def test_a_silent_kernel_times_out(kernel):
    client = _client(kernel)
    kernel.signal_kernel(19)  # SIGSTOP: alive, never answers
    try:
        with pytest.raises(RuntimeError, match="didn't respond in 2 seconds"):
            asyncio.run(client.wait_for_ready(timeout=2))
    finally:
        kernel.signal_kernel(18)
        client.stop_channels()

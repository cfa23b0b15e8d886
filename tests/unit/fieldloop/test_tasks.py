"""fieldloop.tasks: a stop request survives asyncio.wait_for swallowing it (Python 3.11)."""

from __future__ import annotations

import asyncio

import pytest

from fieldloop.tasks import raise_if_cancelled, stop_tasks


async def test_a_cancellation_swallowed_by_wait_for_still_stops_the_loop() -> None:
    answers: asyncio.Queue[asyncio.Future[int]] = asyncio.Queue()
    turns = 0

    async def poller() -> None:  # the shape of a collector: wait for an answer, forever
        nonlocal turns
        loop = asyncio.get_running_loop()
        while True:
            answer: asyncio.Future[int] = loop.create_future()
            answers.put_nowait(answer)
            await asyncio.wait_for(answer, timeout=10)
            turns += 1
            raise_if_cancelled()

    task = asyncio.create_task(poller())
    answer = await answers.get()
    # the answer and the stop request land in the same loop iteration: on 3.11 wait_for returns
    # the answer and drops the CancelledError; only the task's count of requests remembers it
    answer.set_result(1)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done == {task}, "the poller ignored its cancellation"
    assert task.cancelled()
    assert turns <= 1


async def test_a_task_not_asked_to_stop_goes_on() -> None:
    raise_if_cancelled()  # no error

    async def once() -> str:
        raise_if_cancelled()
        return "ok"

    assert await asyncio.create_task(once()) == "ok"


async def test_stop_tasks_asks_again_a_task_that_lost_its_stop_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lost = 0

    async def deaf() -> None:  # loses its first cancellation, as wait_for on 3.11 can
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost += 1
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    async def polite() -> None:
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(deaf(), name="deaf"), asyncio.create_task(polite())]
    await asyncio.wait_for(stop_tasks(tasks, grace=0.05), timeout=2)
    assert all(t.cancelled() for t in tasks) and lost == 1
    assert "task deaf ignored a stop request" in caplog.text


async def test_stop_tasks_reports_a_task_that_had_failed(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken(), name="broken")
    await asyncio.sleep(0)
    await stop_tasks([task])
    assert "task broken had failed" in caplog.text

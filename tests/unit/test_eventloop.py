"""appliance.daemon.eventloop: which loop the daemon runs on."""

from __future__ import annotations

import asyncio
import sys

import pytest

from appliance.daemon import eventloop


def test_auto_is_uvloop_when_installed_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    assert eventloop.loop_factory("auto")[0] == "uvloop"
    assert eventloop.loop_factory("asyncio")[0] == "asyncio"
    monkeypatch.setenv(eventloop.ENV, "asyncio")
    assert eventloop.loop_factory("uvloop")[0] == "asyncio"
    monkeypatch.setenv(eventloop.ENV, "fast")
    with pytest.raises(eventloop.EventLoopUnavailable, match="fast"):
        eventloop.loop_factory("auto")


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    name, factory = eventloop.loop_factory("auto")
    assert name == "asyncio" and factory is asyncio.new_event_loop
    with pytest.raises(eventloop.EventLoopUnavailable, match="not installed"):
        eventloop.loop_factory("uvloop")


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_the_factory_makes_that_loop(choice: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)

    async def name() -> str:
        return eventloop.running_loop_name()

    with asyncio.Runner(loop_factory=eventloop.loop_factory(choice)[1]) as runner:
        assert runner.run(name()) == choice

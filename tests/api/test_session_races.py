"""Changes to a live load balancer that overlap or are cut short: two changes at once never
work from the same stale state, a change cancelled half way changes nothing, and a reload
reads the settings again from the same places lbsim started with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import lbsim
from lbsim.api.config import resolve
from lbsim.api.library import _config_args
from lbsim.api.session import Session
from lbsim.api.source import Source
from lbsim.control.diff import listen_table
from lbsim.errors import LbsimError

EXAMPLE = Path(__file__).parents[2] / "arm-examples" / "vmss-linux-ssh"
FRONTEND = "127.77.1.1"


def _config(**more: Any) -> dict[str, Any]:
    return {
        "frontends": {"web-lb/public": FRONTEND},
        "sources": {"127.0.0.0/8": "203.0.113.0/24"},
        **more,
    }


def _serve(config: Any = None) -> Any:
    return lbsim.serve(
        EXAMPLE / "azuredeploy.json",
        parameters=EXAMPLE / "azuredeploy.parameters.json",
        config=_config() if config is None else config,
    )


def _ids(lb: Session) -> list[int]:
    return sorted(i["instanceId"] for i in lb.instances())


async def _answer(port: int) -> str:
    """``banner``, ``reset`` or ``eof``: what a new connection to the frontend gets."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(FRONTEND, port)
        async with stream:
            try:
                data = await stream.receive_some(100)
            except trio.BrokenResourceError:
                return "reset"
    return "banner" if data.startswith(b"SSH-2.0-") else "eof"


async def test_two_changes_at_once_never_reuse_an_id() -> None:
    async with _serve() as lb:
        async with trio.open_nursery() as both:
            both.start_soon(lb.scale, "web", 5)
            both.start_soon(lb.delete, "web", 0)
        # Scale first: 0..4 less 0; delete first: 1, 2 then 3, 4, 5. Never 1, 2 alone (the
        # delete undoing the scale-out it did not see).
        assert _ids(lb) in ([1, 2, 3, 4], [1, 2, 3, 4, 5])
        await lb.scale("web", 6)
        # In either order: 0 is gone and the new ids continue above the highest ever used.
        assert _ids(lb) == [1, 2, 3, 4, 5, 6]
        assert {listener.key for listener in lb.runtime.listeners} == set(listen_table(lb.plan))


async def test_a_restart_is_never_split_by_another_change() -> None:
    async with _serve() as lb:
        async with trio.open_nursery() as both:
            both.start_soon(lb.restart, "web", 1)
            both.start_soon(lb.stop, "web", 1)
        # Either the stop came first (then the restart started it again) or after it: the
        # instance is in one state and the runtime agrees with the fleet.
        state = next(i["state"] for i in lb.instances() if i["instanceId"] == 1)
        expected = "banner" if state == "running" else "reset"
        assert await _answer(50001) == expected


async def test_a_change_cancelled_half_way_changes_nothing() -> None:
    async with _serve() as lb:
        before = (lb.ports(), _ids(lb), lb.plan)
        backends = lb.runtime.backends
        start_one = backends._start_one
        started = 0

        async def cut_short(*args: Any, **options: Any) -> Any:
            nonlocal started
            started += 1
            if started == 3:  # two new servers are up, the third is starting
                scope.cancel()
            return await start_one(*args, **options)

        backends._start_one = cut_short
        try:
            with trio.CancelScope() as scope:
                await lb.scale("web", 10)
        finally:
            backends._start_one = start_one
        assert scope.cancelled_caught
        assert (lb.ports(), _ids(lb), lb.plan) == before
        assert {listener.key for listener in lb.runtime.listeners} == set(listen_table(lb.plan))
        assert len(lb.runtime.instances) == 3  # what it started for the change was stopped
        report = await lb.scale("web", 4)  # and the next change starts from the same state
        assert report.instances_added == ("web/3",)
        assert await _answer(50003) == "banner"


async def test_reload_reads_settings_again_as_lbsim_started(tmp_path: Path) -> None:
    """A reload resolves the settings from the same environment lbsim started with, and the
    runtime's settings follow for new flows."""
    config = tmp_path / "lbsim.toml"
    config.write_text('[sources]\n"127.0.0.0/8" = "203.0.113.0/24"\n')
    args = _config_args(config)
    environ = {"LBSIM_FRONTENDS": f"web-lb/public={FRONTEND}", "LBSIM_API_PORT": "off"}
    session = Session(
        Source.of(EXAMPLE / "azuredeploy.json", parameters=EXAMPLE / "azuredeploy.parameters.json"),
        resolve(args, environ),
        config_args=args,
        environ=environ,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run)
        try:
            assert await _answer(50000) == "banner"
            config.write_text('[sources]\n"127.0.0.0/8" = "198.51.100.0/24"\n')  # not allowed
            report = await session.reload()
            assert report.added == report.removed == ()  # the frontend stayed where it was
            assert await _answer(50000) == "reset"  # new flows: the new source map
        finally:
            session.shutdown()


async def test_capacity_above_a_scale_sets_limit_is_refused() -> None:
    async with _serve() as lb:
        before = lb.ports()
        with pytest.raises(LbsimError) as refused:
            await lb.scale("web", 1001)
        assert refused.value.code == "InvalidParameter"
        assert "0 to 1000" in refused.value.message
        assert lb.ports() == before

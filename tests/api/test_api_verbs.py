"""The CLI verbs against a served control API (over a FakeHandle): lbsim status, wait, list,
scale, instance and reload, run in-process in a thread, with their output and exit codes."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import trio
from api_client import TOKEN, Served
from api_fake import template_problems

from lbsim.cli import main
from lbsim.control.fleet import PowerState


async def lbsim(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``lbsim ARGV``."""
    capsys.readouterr()
    code = await trio.to_thread.run_sync(partial(main, list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


async def test_list_has_a_row_per_instance_and_a_column_per_rule(
    api: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    api.fake.given("web", 1, state=PowerState.STOPPED, protected=True)
    code, out, err = await lbsim(capsys, "list", "--api", api.url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "SCALE",
        "SET",
        "ID",
        "PRIVATE",
        "IP",
        "STATE",
        "PROTECTED",
        "ssh",
        "http",
        "HOST",
        "KEY",
    ]
    assert [line.split() for line in lines[2:]] == [
        ["web", "0", "10.0.3.4", "running", "no", "50000", "80", "-"],
        ["web", "1", "10.0.3.5", "stopped", "yes", "50001", "80", "-"],
        ["db", "0", "10.0.2.4", "running", "no", "50100", "80", "-"],
    ]


async def test_list_as_json(api: Served, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out, _ = await lbsim(capsys, "list", "--api", api.url, "-o", "json")
    assert code == 0
    assert json.loads(out) == api.fake.instances()


async def test_status(api: Served, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await lbsim(capsys, "status", "--api", api.url)
    assert code == 0
    assert out.splitlines() == [
        f"lbsim at {api.url}: ready",
        "instances: 3 (3 running)",
        "NAT entries: 3; load-balancing rules: 1",
    ]
    api.fake.not_ready = "probing"
    code, out, _ = await lbsim(capsys, "status", "--api", api.url)
    assert (code, out.splitlines()[0]) == (1, f"lbsim at {api.url}: not ready: probing")


async def test_wait_returns_once_ready(api: Served, capsys: pytest.CaptureFixture[str]) -> None:
    api.fake.not_ready = "binding listeners"

    async def become_ready() -> None:
        await trio.sleep(0.5)
        api.fake.not_ready = None

    async with trio.open_nursery() as nursery:
        nursery.start_soon(become_ready)
        started = trio.current_time()
        code, out, _ = await lbsim(capsys, "wait", "--api", api.url, "--timeout", "10")
    assert (code, out) == (0, f"lbsim at {api.url}: ready\n")
    assert 0.4 < trio.current_time() - started < 5


async def test_wait_times_out_with_the_reason(
    api: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    api.fake.not_ready = "binding listeners"
    code, _, err = await lbsim(capsys, "wait", "--api", api.url, "--timeout", "0.5")
    assert (code, err) == (1, "lbsim: not ready after 0.5 s: binding listeners\n")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_wait_for_nobody_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    code, _, err = await lbsim(capsys, "wait", "--api", url, "--timeout", "0.3")
    assert code == 1
    assert f"no lbsim answers at {url}" in err


@pytest.mark.parametrize("verb", [["status"], ["list"], ["reload"], ["scale", "web", "2"]])
async def test_nobody_answering_is_exit_2(
    capsys: pytest.CaptureFixture[str], verb: list[str]
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    code, out, err = await lbsim(capsys, *verb, "--api", url)
    assert (code, out) == (2, "")
    assert err == f"lbsim: ApiUnreachable: no lbsim answers at {url} (connection refused)\n"


async def test_scale_prints_what_changed(api: Served, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await lbsim(capsys, "scale", "web", "3", "--api", api.url)
    assert code == 0
    assert out.splitlines() == [
        "lbsim: scale web 3: 1 instance added, 1 entry added",
        "  + instance web/2",
        "  + ssh.2 Tcp 127.0.0.1:50002 -> web/2 port 22",
    ]
    code, out, _ = await lbsim(capsys, "scale", "web", "1", "--api", api.url, "-o", "json")
    assert code == 0
    assert '"removed": [\n      "web/1",\n      "web/2"' in out


async def test_instance_verbs(api: Served, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await lbsim(capsys, "instance", "stop", "web", "1", "--api", api.url)
    assert (code, out) == (0, "lbsim: stop web/1: 1 instance changed\n  ~ instance web/1\n")
    code, out, _ = await lbsim(capsys, "instance", "delete", "db", "0", "--api", api.url)
    assert code == 0
    assert out.splitlines() == [
        "lbsim: delete db/0: 1 instance removed, 1 entry removed",
        "  - instance db/0",
        "  - ssh.0 Tcp 127.0.0.1:50100 -> db/0 port 22",
    ]
    code, out, _ = await lbsim(capsys, "instance", "reimage", "web", "0", "--api", api.url)
    assert (code, out) == (0, "lbsim: reimage web/0: 1 instance changed\n  ~ instance web/0\n")
    assert api.fake.calls == [("stop", "web", 1), ("delete", "db", 0), ("reimage", "web", 0)]


async def test_refusals_exit_2_with_the_apis_message(
    api: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await lbsim(capsys, "instance", "start", "web", "7", "--api", api.url)
    assert (code, out) == (2, "")
    assert err == (
        "lbsim: ResourceNotFound: The scale set 'web' has no instance 7 (instances: 0, 1).\n"
    )
    code, _, err = await lbsim(capsys, "scale", "nope", "1", "--api", api.url)
    assert (code, err) == (
        2,
        "lbsim: ResourceNotFound: The scale set 'nope' is not in the deployment "
        "(scale sets: web, db).\n",
    )
    code, _, err = await lbsim(capsys, "scale", "web", "-1", "--api", api.url)
    assert code == 2
    assert err == "lbsim: InvalidRequestContent: $.capacity: -1 is less than the minimum of 0\n"


async def test_reload(api: Served, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await lbsim(capsys, "reload", "--api", api.url)
    assert (code, out) == (0, "lbsim: reload: 1 NSG changed\n  ~ network security group web-nsg\n")
    api.fake.reload_problems = template_problems()
    code, out, err = await lbsim(capsys, "reload", "--api", api.url)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "lbsim: InvalidTemplate: The template has 2 problems; the load balancer runs on unchanged.",
        "  lb.json#/parameters/instanceCount: InvalidTemplate: The value 300 of parameter "
        "'instanceCount' exceeds maxValue 100.",
        "  lb.json#/resources/1/properties/securityRules/1: SecurityRuleConflict: Rules 'a' "
        "and 'b' have the same priority 100 and direction Inbound.",
    ]


async def test_no_change_says_so(api: Served, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await lbsim(capsys, "scale", "web", "2", "--api", api.url)
    assert (code, out) == (0, "lbsim: scale web 2: no change\n")
    code, out, err = await lbsim(capsys, "instance", "start", "web", "0", "--api", api.url)
    assert (code, out, err) == (0, "lbsim: start web/0: no change\n", "")  # already running


async def test_the_token_comes_from_the_flag_or_the_environment(
    secured: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LBSIM_API_TOKEN", raising=False)
    code, _, err = await lbsim(capsys, "list", "--api", secured.url)
    assert code == 2
    assert err.startswith("lbsim: AuthenticationFailed: ")
    code, _, err = await lbsim(capsys, "wait", "--api", secured.url, "--timeout", "5")
    assert code == 2  # a wrong token does not get better by waiting
    assert err.startswith("lbsim: AuthenticationFailed: ")
    code, _, _ = await lbsim(capsys, "list", "--api", secured.url, "--api-token", TOKEN)
    assert code == 0
    monkeypatch.setenv("LBSIM_API_TOKEN", TOKEN)
    code, _, _ = await lbsim(capsys, "reload", "--api", secured.url)
    assert code == 0
    assert secured.fake.calls == [("reload",)]


async def test_the_api_url_comes_from_the_environment(
    api: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LBSIM_API", api.url + "/")
    code, out, _ = await lbsim(capsys, "status")
    assert (code, out.splitlines()[0]) == (0, f"lbsim at {api.url}: ready")
    code, _, err = await lbsim(capsys, "status", "--api", "127.0.0.1:9150")
    assert (code, err) == (
        2,
        "lbsim: InvalidArgument: --api: '127.0.0.1:9150' is not a URL like http://127.0.0.1:9150\n",
    )


@pytest.mark.parametrize("verb", ["status", "wait", "list", "scale", "instance", "reload"])
def test_every_option_has_help_with_its_default(
    verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--api URL the running lbsim's control API (default: $LBSIM_API, else" in text
    assert "(default: $LBSIM_API_TOKEN, else none)" in text
    assert "--output {table,json} how to print the result (default: table)" in text
    if verb == "wait":
        assert "--timeout S give up after S seconds (default: 30)" in text

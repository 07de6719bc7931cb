"""The pytest plugin as a user meets it: test files of a user's own, run by pytest's
``pytester`` against a small template of this folder. Port maps are chosen so that no other
test of lbsim's suite listens where these do (per-worker:70 and up, or xdist's own)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TOPOLOGY = Path(__file__).with_name("topology.json")

CONFTEST = """
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def lbsim_template():
    return HERE / "topology.json"


@pytest.fixture(scope="session")
def lbsim_config():
    # 127.0.0.1 is the office; 127.0.0.66 is somewhere else
    return {"sources": {"127.0.0.1": "203.0.113.7", "127.0.0.66": "198.51.100.66"}}
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copy(TOPOLOGY, pytester.path / "topology.json")
    pytester.makeconftest(CONFTEST)
    return pytester


def test_a_user_suite_uses_the_fixtures(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_access="""
        import pytest

        def test_ssh_to_every_instance(lbsim):
            for row in lbsim.instances():
                lbsim.assert_reachable("web", row["instanceId"], 22)

        def test_ssh_from_outside_the_office_is_denied(lbsim):
            lbsim.assert_denied("web", 0, 22, source="198.51.100.20")
            lbsim.assert_reachable("web", 0, 22, source="203.0.113.20")

        def test_the_rule_is_probed_up_and_an_instance_goes_down(lbsim):
            lbsim.wait_probed_up("web", 1)
            lbsim.stop("web", 1)
            lbsim.wait_for(lambda: lbsim.instances()[1]["state"] == "stopped")
            lbsim.assert_denied("web", 1, 22)
            lbsim.assert_reachable("web", 0, 22)

        @pytest.mark.lbsim(parameters={"instanceCount": 3})
        def test_a_marker_gives_a_test_its_own(lbsim):
            assert len(lbsim.instances()) == 3
            assert lbsim.instances()[1]["state"] == "running"

        def test_the_shared_one_is_back(lbsim):
            assert len(lbsim.instances()) == 2

        def test_the_factory_starts_more(lbsim_factory):
            one = lbsim_factory("topology.json", {"instanceCount": 1}, {"port_map": "ephemeral"})
            two = lbsim_factory("topology.json", None, {"port_map": "ephemeral"})
            assert (len(one.instances()), len(two.instances())) == (1, 2)
            assert one.endpoint("web", 0, 22) != two.endpoint("web", 0, 22)

        def test_wait_for_says_what_it_saw(lbsim):
            stopped = lambda: [r["name"] for r in lbsim.instances() if r["state"] == "stopped"]
            with pytest.raises(TimeoutError, match="within 0.1 s; last seen: .{2}$"):
                lbsim.wait_for(stopped, timeout=0.1)
        """
    )
    result = suite.runpytest("-p", "no:cacheprovider", "--lbsim-port-map=per-worker:70")
    result.assert_outcomes(passed=7)


def test_a_failing_reachability_assertion_names_the_deciding_rule(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        test_denied="""
        def test_ssh_from_anywhere(lbsim):
            lbsim.assert_reachable("web", 0, 22, source="198.51.100.20")
        """
    )
    result = suite.runpytest("-p", "no:cacheprovider", "--lbsim-port-map=per-worker:71")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Tcp port 22 of web/0: expected reachable; from 127.250.0.1 to 127.0.72.1:50000: "
            "reset.",
            "*NAT entry: ssh.0 127.0.0.1:50000 -> web/0 (10.0.0.4):22 Tcp",
            "*NSG verdict for source 198.51.100.20: Deny by web-nsg/DenyAllInBound (subnet)*",
            "*web-nsg/allow-ssh-office priority 100 Allow: no match (protocol=yes source=no *",
            "*web-nsg/DenyAllInBound priority 65500 Deny: matched *",
        ]
    )


def test_two_xdist_workers_run_one_template_at_once(suite: pytest.Pytester) -> None:
    body = """
    import os
    import time
    from pathlib import Path

    def test_{n}(lbsim):
        time.sleep(0.3)  # both workers hold their load balancer at once
        host, port = lbsim.endpoint("web", 0, 22)
        worker = os.environ["PYTEST_XDIST_WORKER"]
        Path(f"{{worker}}.{n}.txt").write_text(f"{{host}}:{{port}}")
        lbsim.assert_reachable("web", 0, 22)
    """
    suite.makepyfile(**{f"test_w{n}": body.format(n=n) for n in range(6)})
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=6)
    seen = {p.name.split(".")[0]: p.read_text() for p in suite.path.glob("gw*.txt")}
    # each worker on loopback addresses of its own, both at Azure's port
    assert seen == {"gw0": "127.0.1.1:50000", "gw1": "127.0.2.1:50000"}


def test_the_scope_comes_from_the_ini_option(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nlbsim_scope = function\nlbsim_port_map = per-worker:73\n")
    suite.makepyfile(
        test_scope="""
        def test_first(lbsim):
            lbsim.stop("web", 0)

        def test_second_gets_a_new_one(lbsim):
            assert lbsim.instances()[0]["state"] == "running"
        """
    )
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_no_template_is_a_clear_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_none="def test_it(lbsim):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*lbsim: which template? Give --lbsim-template*"])


def test_the_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, lbsim.testing.plugin; "
        "heavy = ('trio', 'lbsim.api.library', 'lbsim.dataplane'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def test_a_config_that_is_no_mapping_is_a_clear_usage_error(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_toml="""
        import pytest

        @pytest.mark.lbsim(config="lbsim.toml")
        def test_it(lbsim):
            pass
        """
    )
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*lbsim_config: a mapping of lbsim.toml's keys, not str*"])


def test_a_marker_s_template_needs_no_suite_template(pytester: pytest.Pytester) -> None:
    shutil.copy(TOPOLOGY, pytester.path / "topology.json")
    pytester.makepyfile(
        test_marked="""
        import pytest

        OFFICE = {"sources": {"127.0.0.1": "203.0.113.7"}}

        @pytest.mark.lbsim(template="topology.json", config=OFFICE)
        def test_its_own(lbsim):
            assert len(lbsim.instances()) == 2
            lbsim.assert_reachable("web", 1, 22)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--lbsim-port-map=per-worker:74")
    result.assert_outcomes(passed=1)


BAD_TEMPLATE = """{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    {"type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2023-09-01", "name": "pip",
     "location": "westeurope", "sku": {"name": "Sideways"}},
    {"type": "Microsoft.Network/networkSecurityGroups", "apiVersion": "2023-09-01",
     "name": "nsg", "location": "westeurope",
     "properties": {"securityRules": [{"name": "ssh", "properties": {
       "priority": 99, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
       "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
       "destinationPortRange": "22"}}]}}
  ]
}"""


def test_an_invalid_template_fails_with_every_problem_and_no_traceback(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "bad.json").write_text(BAD_TEMPLATE, encoding="utf-8")
    pytester.makepyfile(test_bad="def test_it(lbsim):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--lbsim-template=bad.json")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*lbsim could not start */bad.json (2 problems):",
            "*/bad.json#/resources/0/sku/name: InvalidSku: name must be one of Basic, *",
            "*/bad.json#/resources/1/properties/securityRules/0/properties/priority: "
            "SecurityRuleInvalidPriority: priority must be an integer from 100 to 4096, not 99.",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "lbsim/api/library.py" not in result.stdout.str()


def test_a_refused_setting_fails_the_test_plainly(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_setting="""
        import pytest

        @pytest.mark.lbsim(config={"idle_timeout_scale": 0})
        def test_it(lbsim):
            pass
        """
    )
    result = suite.runpytest("-p", "no:cacheprovider", "--lbsim-port-map=per-worker:75")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*lbsim could not start */topology.json (a problem):",
            "*InvalidSetting: --idle-timeout-scale: 0: must be greater than 0*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("key", ["api_port", "metrics_port"])
def test_a_control_api_at_a_fixed_port_takes_a_free_one(suite: pytest.Pytester, key: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]  # held: a fixed port would collide here
    suite.makepyfile(
        test_api=f"""
        import urllib.request

        import pytest

        @pytest.mark.lbsim(config={{"{key}": {port}}})
        def test_it(lbsim):
            assert lbsim.api_url is not None
            assert not lbsim.api_url.endswith(":{port}")
            with urllib.request.urlopen(lbsim.api_url + "/healthz", timeout=5) as answer:
                assert answer.status == 200
        """
    )
    with taken:
        result = suite.runpytest("-p", "no:cacheprovider", "--lbsim-port-map=per-worker:76")
    result.assert_outcomes(passed=1)

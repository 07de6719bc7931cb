"""Conformance: every template of the real-world ARM corpus loads and plans as Azure would.

``tests/corpus.py`` finds the corpus (``LBSIM_ARM_CORPUS``). Without it the tests skip, naming
why, except when ``CI`` is set: then a missing corpus fails the run.
Parameters files hold ``GEN-...`` values that the quickstart pipeline substitutes; they are
loaded as ``lbsim up -p FILE --fill-missing`` loads them, which fills those with placeholders.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
from corpus import CORPUS, cases, corpus_present, require_corpus

from lbsim.api.files import read_json, resolve_link
from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.plan import plan
from lbsim.control.types import NatKind, Plan
from lbsim.errors import TemplateInvalid
from lbsim.model import Deployment

pytestmark = pytest.mark.corpus

# Its parameters file supplies a parameter the template does not declare: Azure rejects it.
KNOWN_INVALID = "qs-vmss-win-iis-app-ssl/azuredeploy.json"
MIN_LOADED = 0.95


def _templates() -> list[str]:
    """Every template (a top-level .json that is not a parameters file), as folder/file."""
    if not corpus_present():
        return []
    return sorted(
        f"{path.parent.name}/{path.name}"
        for path in CORPUS.glob("*/*.json")
        if not path.name.endswith(".parameters.json")
    )


TEMPLATES = _templates()


@attrs.frozen
class Outcome:
    deployment: Deployment | None = None
    plan: Plan | None = None
    error: TemplateInvalid | None = None


def _parameters(template: Path) -> tuple[Any, str | None]:
    path = template.with_name(template.name.removesuffix(".json") + ".parameters.json")
    if not path.is_file():
        return None, None
    return read_json(str(path)), str(path)


@functools.cache
def outcome(case: str) -> Outcome:
    """Load and plan one corpus template, once per test session."""
    template = CORPUS / case
    try:
        parameters, parameters_name = _parameters(template)
        options = LoadOptions(
            parameters_file=parameters,
            parameters_file_name=parameters_name,
            fill_missing=True,
            resolve_link=resolve_link,
            template_link=template.resolve().as_uri(),
        )
        deployment = load_template(read_json(str(template)), str(template), options)
        return Outcome(deployment, plan(deployment))
    except TemplateInvalid as error:
        return Outcome(error=error)


def test_at_least_95_percent_of_the_corpus_loads() -> None:
    require_corpus()
    failed = [case for case in TEMPLATES if outcome(case).error is not None]
    loaded = 1 - len(failed) / len(TEMPLATES)
    assert loaded >= MIN_LOADED, f"{loaded:.0%} loaded; failed: {failed}"


@pytest.mark.parametrize("case", cases(TEMPLATES))
def test_template_loads_or_fails_with_located_errors(case: str) -> None:
    """A template lbsim cannot load says why, and where, with a code: never a crash."""
    require_corpus()
    error = outcome(case).error
    for problem in error.problems if error is not None else ():
        assert problem.code
        assert problem.document is not None, str(problem)
        assert problem.at is not None, str(problem)


@pytest.mark.skipif(
    bool(os.environ.get("LBSIM_ARM_CORPUS")), reason="another corpus: only the 95% goal applies"
)
@pytest.mark.parametrize("case", cases([t for t in TEMPLATES if t != KNOWN_INVALID]))
def test_every_template_of_the_reference_corpus_loads(case: str) -> None:
    """No regression: each template of the reference corpus that loads today keeps loading."""
    require_corpus()
    error = outcome(case).error
    assert error is None, "\n".join(str(p) for p in error.problems) if error else ""


@pytest.mark.parametrize("case", cases(TEMPLATES))
def test_every_nat_pool_gives_one_entry_per_instance_inside_its_range(case: str) -> None:
    require_corpus()
    result = outcome(case)
    if result.error is not None:
        return  # counted by the 95% test; its errors are checked above
    assert result.deployment is not None
    assert result.plan is not None
    entries = Counter(
        (e.load_balancer, e.source_rule, e.protocol)
        for e in result.plan.nat
        if e.kind is NatKind.POOL
    )
    for lb in result.deployment.load_balancers:
        for pool in lb.inbound_nat_pools:
            users = _instances_using(result.deployment, pool.id)
            for transport in pool.protocol.transports():
                assert entries[(lb.name, pool.name, transport)] == users, (lb.name, pool.name)
            for entry in result.plan.nat:
                if (entry.load_balancer, entry.source_rule) == (lb.name, pool.name):
                    low, high = pool.frontend_port_range_start, pool.frontend_port_range_end
                    assert low <= entry.frontend_port <= high, entry.rule_name


def _instances_using(deployment: Deployment, pool_id: str) -> int:
    """How many instance ipconfigs reference the pool: one NAT entry each (per transport)."""
    return sum(
        vmss.capacity
        for vmss in deployment.virtual_machine_scale_sets
        for config in vmss.network_interface_configurations
        for ipc in config.ip_configurations
        if pool_id.lower() in {r.key for r in ipc.load_balancer_inbound_nat_pools}
    )


def test_the_corpus_has_nat_pools_to_check() -> None:
    require_corpus()
    pools = sum(
        len(lb.inbound_nat_pools)
        for case in TEMPLATES
        if (deployment := outcome(case).deployment) is not None
        for lb in deployment.load_balancers
    )
    entries = sum(
        1
        for case in TEMPLATES
        if (result := outcome(case).plan) is not None
        for e in result.nat
        if e.kind is NatKind.POOL
    )
    assert pools > 0
    assert entries >= pools


def test_the_known_invalid_template_fails_as_azure_does() -> None:
    require_corpus()
    if KNOWN_INVALID not in TEMPLATES:
        pytest.fail(f"{KNOWN_INVALID} is expected in the corpus at {CORPUS}")
    error = outcome(KNOWN_INVALID).error
    assert error is not None
    (problem,) = error.problems
    assert problem.code == "InvalidTemplate"
    assert str(problem.at) == "/parameters/newStorageAccountSuffix/value"
    assert (problem.file or "").endswith("qs-vmss-win-iis-app-ssl/azuredeploy.parameters.json")
    assert "newStorageAccountSuffix" in problem.message

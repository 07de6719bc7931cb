"""The NSG verdicts of the data plane: judged by the pure evaluator, remembered per route and
presented source address (and source port, where a rule of the backend's NSGs looks at
source ports), so that a new flow usually costs one dictionary lookup."""

from __future__ import annotations

import attrs

from lbsim.control.check import Guard, nsg_destination
from lbsim.control.nsg import Decision, Flow
from lbsim.control.types import Backend, Frontend
from lbsim.dataplane.events import NsgHit
from lbsim.dataplane.listeners import Listener, Route
from lbsim.errors import LbsimError
from lbsim.model import TransportProtocol

__all__ = ["UNJUDGED", "Verdict", "Verdicts"]


@attrs.frozen
class Verdict:
    """What the NSGs decided on a flow, ready to count and report."""

    allowed: bool
    hits: tuple[NsgHit, ...]  # each NSG's matching rule, when explained
    counted: tuple[str, str, str, str]  # the runtime's nsg_decisions key
    rule: str  # the deciding rule's flow-log name, or ""
    access: str  # Allow / Deny


# An address the NSGs cannot judge (mixed IP versions): refused, counted by no rule.
UNJUDGED = Verdict(False, (), ("", "", "", ""), "", "")
_MAX_REMEMBERED = 65536


class Verdicts:
    """Verdicts for the flows of one plan; ``explain`` names each NSG's rule (flow logs)."""

    def __init__(self, guard: Guard, *, explain: bool) -> None:
        self.guard = guard
        self.explain = explain
        self._remembered: dict[tuple[TransportProtocol, int, str, int], Verdict] = {}
        self._ported: dict[int, bool] = {}  # by id of a Backend of the plan

    def __len__(self) -> int:
        """How many verdicts are remembered."""
        return len(self._remembered)

    def of(self, listener: Listener, route: Route, source: str, port: int) -> Verdict:
        """The verdict on a flow from ``source``:``port`` (as the NSGs see it) by ``route``."""
        backend = route.backend
        ported = self._ported.get(id(backend))
        if ported is None:
            ported = self._ported[id(backend)] = source_ports_matter(backend)
        key = (listener.protocol, id(route), source, port if ported else -1)
        verdict = self._remembered.get(key)
        if verdict is None:
            verdict = self._judge(listener, route, source, port)
            if len(self._remembered) >= _MAX_REMEMBERED:
                self._remembered.clear()
            self._remembered[key] = verdict
        return verdict

    def _judge(self, listener: Listener, route: Route, source: str, port: int) -> Verdict:
        entry = listener.entry
        try:
            flow = self.guard.flow(
                listener.protocol,
                source,
                port,
                route.backend,
                route.backend_port,
                destination=nsg_destination(entry, route.backend),  # floating IP: the frontend
            )
            decision, hits = self._decide(flow, route.backend, entry.frontend)
        except LbsimError:
            return UNJUDGED
        rule = decision.rule.flow_log_name if decision.rule else ""
        nsg = (decision.network_security_group or "").rsplit("/", 1)[-1]
        access = decision.access.value
        return Verdict(
            decision.allowed, hits, (nsg, decision.level or "", rule, access), rule, access
        )

    def _decide(
        self, flow: Flow, backend: Backend, frontend: Frontend
    ) -> tuple[Decision, tuple[NsgHit, ...]]:
        """The fast decision; or, for flow logs, the explained one with each NSG's rule."""
        if not self.explain:
            return self.guard.decide(flow, backend, frontend), ()
        verdict = self.guard.explain(flow, backend, frontend)
        hits = tuple(
            NsgHit(e.network_security_group, e.rule.flow_log_name, e.rule.access.value)
            for e in verdict.evaluated
            if e.matched
        )
        return verdict.decision, hits


def source_ports_matter(backend: Backend) -> bool:
    """Whether a rule of the backend's NSGs restricts source ports (then every source port
    is judged on its own)."""
    return any(
        rule.source_ports() not in {(), ("*",)}
        for nsg in (backend.subnet_nsg, backend.nic_nsg)
        if nsg is not None
        for rule in (*nsg.security_rules, *nsg.default_security_rules)
    )

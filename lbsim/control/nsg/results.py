"""The values an NSG evaluation produces: a decision, and a verdict that explains it."""

from __future__ import annotations

import attrs

from lbsim.model.common import SecurityRuleAccess
from lbsim.model.network import SecurityRule


@attrs.frozen
class RuleEvaluation:
    """One rule held against one flow: which of its five parts match."""

    rule: SecurityRule
    network_security_group: str  # the NSG's id
    network_security_group_name: str
    level: str  # SUBNET or NETWORK_INTERFACE
    protocol: bool
    source: bool
    source_port: bool
    destination: bool
    destination_port: bool

    @property
    def matched(self) -> bool:
        return (
            self.protocol
            and self.source
            and self.source_port
            and self.destination
            and self.destination_port
        )


@attrs.frozen
class Decision:
    """What happens to a new flow, and which rule of which NSG at which level said so.

    ``rule`` is None when no NSG applies at all (the flow is allowed), or when an NSG whose
    rules match nothing decided (denied; impossible with Azure's default rules in place)."""

    access: SecurityRuleAccess
    rule: SecurityRule | None = None
    network_security_group: str | None = None  # the deciding NSG's id
    level: str | None = None

    @property
    def allowed(self) -> bool:
        return self.access is SecurityRuleAccess.ALLOW


@attrs.frozen
class Verdict:
    """A decision with its explanation: every rule evaluated, in order, across both levels,
    up to the deciding rule at each level that was reached."""

    access: SecurityRuleAccess
    rule: SecurityRule | None = None
    network_security_group: str | None = None
    level: str | None = None
    evaluated: tuple[RuleEvaluation, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.access is SecurityRuleAccess.ALLOW

    @property
    def decision(self) -> Decision:
        return Decision(self.access, self.rule, self.network_security_group, self.level)


@attrs.frozen
class EffectiveRule:
    """A rule in evaluation order, with the NSG and level it is evaluated at."""

    level: str
    network_security_group: str  # the NSG's id
    network_security_group_name: str
    rule: SecurityRule


ALLOWED_WITHOUT_NSG = Decision(SecurityRuleAccess.ALLOW)
# No NSG applies, and a Standard load balancer admits only what an NSG allows.
CLOSED_WITHOUT_NSG = Decision(SecurityRuleAccess.DENY)

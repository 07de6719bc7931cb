"""Network security groups: which new flows they allow, and which rules Azure would reject.

``evaluate`` explains a verdict rule by rule; ``decide`` gives the same decision fast, for the
data plane; ``effective_rules`` lists the rules in evaluation order;
``validate_network_security_group`` reports what Azure would refuse (its codes are listed in
``lbsim.control.nsg.validate``).
"""

from lbsim.control.nsg.compiled import compile_network_security_group, decide
from lbsim.control.nsg.context import (
    AZURE_LOAD_BALANCER_PREFIX,
    NETWORK_INTERFACE,
    SUBNET,
    Flow,
    IPAddress,
    IPNetwork,
    NetworkContext,
)
from lbsim.control.nsg.explain import evaluate, evaluate_rule
from lbsim.control.nsg.order import effective_rules, level_order, ordered_rules
from lbsim.control.nsg.results import (
    ALLOWED_WITHOUT_NSG,
    CLOSED_WITHOUT_NSG,
    Decision,
    EffectiveRule,
    RuleEvaluation,
    Verdict,
)
from lbsim.control.nsg.validate import validate_network_security_group, validate_security_rule

__all__ = [
    "ALLOWED_WITHOUT_NSG",
    "AZURE_LOAD_BALANCER_PREFIX",
    "CLOSED_WITHOUT_NSG",
    "NETWORK_INTERFACE",
    "SUBNET",
    "Decision",
    "EffectiveRule",
    "Flow",
    "IPAddress",
    "IPNetwork",
    "NetworkContext",
    "RuleEvaluation",
    "Verdict",
    "compile_network_security_group",
    "decide",
    "effective_rules",
    "evaluate",
    "evaluate_rule",
    "level_order",
    "ordered_rules",
    "validate_network_security_group",
    "validate_security_rule",
]

"""Faults injected into the data plane, in Toxiproxy's vocabulary (its "toxics":
https://github.com/Shopify/toxiproxy#toxics): values, and the live set a runtime consults.

A fault has a name, a type, a stream (``upstream``: client to backend; ``downstream``: backend
to client), a toxicity (the probability that it acts on a new flow, or on a datagram for
UDP's ``loss`` and ``duplicate``: 0 never, 1 always), a seed (so a run reproduces: see
below), its attributes, and a target: a frontend
port, a rule (a NAT rule or pool, or a load-balancing rule, by name), an instance
(``web/1``), any of them together, or none (everything).

The runtime asks :attr:`Faults.on` once per new flow (and once per UDP datagram): while no
fault is set that is all a flow costs, and it takes the engine's fast path. Faults act on new
flows (and on new datagrams): a flow keeps the toxics it started with.

A seed reproduces a run whatever the timing: a fault's own ``random.Random`` makes its
toxicity draws only, one per new flow it matches (or per datagram), in the order they come;
the n-th of those flows draws its jitter and slice sizes from a ``random.Random`` of its own,
seeded by the fault's seed and n. So how many chunks one flow had (which depends on timing)
never changes which later flows are hit, nor their jitter.
"""

from __future__ import annotations

import enum
import math
import random
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import trio

from lbsim.errors import LbsimError
from lbsim.pointer import Pointer

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_MAX",
    "Fault",
    "FaultType",
    "Faults",
    "Stream",
    "Target",
    "Toxic",
    "Toxics",
    "flow_rng",
    "make_fault",
]


class FaultType(enum.StrEnum):
    LATENCY = "latency"
    BANDWIDTH = "bandwidth"
    TIMEOUT = "timeout"
    RESET_PEER = "reset_peer"
    SLOW_CLOSE = "slow_close"
    SLICER = "slicer"
    LIMIT_DATA = "limit_data"
    LOSS = "loss"
    DUPLICATE = "duplicate"
    DOWN = "down"


class Stream(enum.StrEnum):
    UPSTREAM = "upstream"  # client to backend
    DOWNSTREAM = "downstream"  # backend to client


DATAGRAM_TYPES = frozenset({FaultType.LOSS, FaultType.DUPLICATE})


@attrs.frozen
class Attribute:
    """One attribute of a fault type: its unit (for the docs), default (None: required),
    and whether it is a whole number."""

    unit: str
    default: float | None = 0
    integer: bool = True


# The largest attribute value (a 64-bit integer): more is no useful delay, rate or size, and
# would overflow a sleep's deadline.
ATTRIBUTE_MAX = 2**63 - 1

# Toxiproxy's attribute names and units, per type (loss, duplicate and down take none).
ATTRIBUTES: dict[FaultType, dict[str, Attribute]] = {
    FaultType.LATENCY: {"latency": Attribute("ms"), "jitter": Attribute("ms")},
    FaultType.BANDWIDTH: {"rate": Attribute("KB/s", None)},
    FaultType.TIMEOUT: {"timeout": Attribute("ms")},
    FaultType.RESET_PEER: {"timeout": Attribute("ms")},
    FaultType.SLOW_CLOSE: {"delay": Attribute("ms")},
    FaultType.SLICER: {
        "average_size": Attribute("bytes", None),
        "size_variation": Attribute("bytes"),
        "delay": Attribute("us"),
    },
    FaultType.LIMIT_DATA: {"bytes": Attribute("bytes", None)},
    FaultType.LOSS: {},
    FaultType.DUPLICATE: {},
    FaultType.DOWN: {},
}


@attrs.frozen
class Target:
    """Where a fault acts: every field given must match (none given: everything)."""

    frontend_port: int | None = None
    rule: str | None = None
    instance: str | None = None

    def matches(self, port: int, rules: tuple[str, ...], instance: str) -> bool:
        """Whether a flow through frontend ``port``, a rule named one of ``rules`` (lower
        case: a NAT pool's entry is both ``pool.3`` and ``pool``) to ``instance`` is hit."""
        return (
            (self.frontend_port is None or self.frontend_port == port)
            and (self.rule is None or self.rule.lower() in rules)
            and (self.instance is None or self.instance.lower() == instance.lower())
        )

    def to_json(self) -> dict[str, Any]:
        found = {"frontendPort": self.frontend_port, "rule": self.rule, "instance": self.instance}
        return {key: value for key, value in found.items() if value is not None}


@attrs.frozen
class Fault:
    name: str
    type: FaultType
    stream: Stream
    toxicity: float
    seed: int
    attributes: Mapping[str, float]
    target: Target = Target()

    def __getitem__(self, key: str) -> float:
        """An attribute's value (its default when not given)."""
        return self.attributes[key]

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's JSON of a toxic, with lbsim's ``target`` and ``seed``."""
        return {
            "name": self.name,
            "type": self.type.value,
            "stream": self.stream.value,
            "toxicity": self.toxicity,
            "seed": self.seed,
            "attributes": dict(self.attributes),
            "target": self.target.to_json(),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Fault:
        """A fault from its JSON (as :meth:`to_json` writes it; only ``type`` required)."""
        target = doc.get("target") or {}
        return make_fault(
            doc["type"],
            name=doc.get("name"),
            stream=doc.get("stream", Stream.DOWNSTREAM.value),
            toxicity=doc.get("toxicity", 1.0),
            seed=doc.get("seed"),
            target=Target(target.get("frontendPort"), target.get("rule"), target.get("instance")),
            attributes=doc.get("attributes") or {},
        )


def rules_of(entry: Any) -> tuple[str, ...]:
    """The names a NAT entry or load-balancing rule answers to, lower case: its own, and a
    NAT pool's or V2 rule's (``pool.3`` is an entry of ``pool``)."""
    return (entry.rule_name.lower(), getattr(entry, "source_rule", "").lower())


def make_fault(
    kind: str,
    *,
    name: str | None = None,
    stream: str = Stream.DOWNSTREAM.value,
    toxicity: float = 1.0,
    seed: int | None = None,
    target: Target = Target(),
    attributes: Mapping[str, Any] | None = None,
) -> Fault:
    """A fault, checked: its type, stream, toxicity and attributes (``InvalidFault``,
    naming the field). Toxiproxy's default name is ``<type>_<stream>``; the default seed
    is derived from the name, so two faults do not draw the same numbers."""
    fault_type = _parse(FaultType, kind, "type")
    way = _parse(Stream, stream, "stream")
    _check_toxicity(fault_type, toxicity)
    name = name or f"{fault_type.value}_{way.value}"
    if seed is None:
        seed = zlib.crc32(name.encode())
    if isinstance(seed, bool) or not isinstance(seed, int | float) or not _whole(seed):
        raise _invalid("seed", f"{seed!r} is not a whole number")
    known = ATTRIBUTES[fault_type]
    given = dict(attributes or {})
    values: dict[str, float] = {}
    for key, value in given.items():
        spec = known.get(key)
        if spec is None:
            names = ", ".join(known) or "none"
            raise _invalid(f"attributes.{key}", f"{fault_type} takes no {key!r} (known: {names})")
        values[key] = _number(value, spec, f"attributes.{key}")
    for key, spec in known.items():
        if key not in values:
            if spec.default is None:
                raise _invalid(f"attributes.{key}", f"{fault_type} requires {key} ({spec.unit})")
            values[key] = spec.default
    if fault_type is FaultType.SLICER and values["average_size"] < 1:
        raise _invalid("attributes.average_size", "a slice is at least 1 byte")
    return Fault(name, fault_type, way, float(toxicity), int(seed), values, target)


def _check_toxicity(fault_type: FaultType, toxicity: Any) -> None:
    """A probability; ``down`` takes 0 or 1 only: an instance is down for every flow, every
    datagram and its probes alike, or not at all (a crashed VM answers none of them)."""
    if isinstance(toxicity, bool) or not isinstance(toxicity, int | float):
        raise _invalid("toxicity", f"{toxicity!r} is not a number")
    if not 0 <= toxicity <= 1:
        raise _invalid("toxicity", f"{toxicity} is not between 0 and 1")
    if fault_type is FaultType.DOWN and toxicity not in (0, 1):
        raise _invalid(
            "toxicity", f"down takes 0 or 1 (an instance is down or not), not {toxicity}"
        )


def _whole(value: float) -> bool:
    """Whether ``value`` is a whole number (never infinity or NaN, which ``int()`` refuses)."""
    return isinstance(value, int) or (math.isfinite(value) and value.is_integer())


def _parse(kind: type[enum.StrEnum], value: Any, field: str) -> Any:
    try:
        return kind(str(value).lower())
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise _invalid(field, f"{value!r} is not one of {choices}") from None


def _number(value: Any, spec: Attribute, field: str) -> float:
    """An attribute's value: a finite number from 0 to :data:`ATTRIBUTE_MAX` (infinity would
    overflow a sleep or a byte count; NaN compares false with everything)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(field, f"{value!r} is not a number ({spec.unit})")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(field, f"{value} is not a finite number ({spec.unit})")
    if value < 0:
        raise _invalid(field, f"{value} is negative")
    if value > ATTRIBUTE_MAX:
        raise _invalid(field, f"{value} is above {ATTRIBUTE_MAX} {spec.unit}")
    if spec.integer and not _whole(value):
        raise _invalid(field, f"{value} is not a whole number of {spec.unit}")
    return int(value) if spec.integer else float(value)


def _invalid(field: str, message: str) -> LbsimError:
    """``InvalidFault``, at the field's pointer in the fault's JSON (``/attributes/rate``)."""
    return LbsimError(
        "InvalidFault", f"{field}: {message}", Pointer.parse("/" + field.replace(".", "/"))
    )


@attrs.define(eq=False)
class Toxic:
    """A fault acting on one flow: the fault, the flow's own random numbers (jitter,
    slices, from :func:`flow_rng`), and the event set when the fault goes (a ``timeout``
    ends its flows then)."""

    fault: Fault
    rng: random.Random
    gone: trio.Event


def flow_rng(seed: int, index: int) -> random.Random:
    """The random numbers of the ``index``-th flow (from 0) a fault seeded ``seed`` matched:
    the same for that flow in every run, whatever the other flows drew meanwhile."""
    return random.Random(f"{seed}/{index}")  # noqa: S311 (no secret; a str seeds stably)


@attrs.frozen
class Toxics:
    """What acts on one new TCP flow: each direction's toxics in the order the faults were
    added, and, for ``down``, the event set when that fault goes."""

    upstream: tuple[Toxic, ...] = ()
    downstream: tuple[Toxic, ...] = ()
    down: trio.Event | None = None


@attrs.define(eq=False)
class _Active:
    """A fault set now: its toxicity draws (``rng``), how many new flows it has matched, and
    the event set when it goes."""

    fault: Fault
    rng: random.Random
    flows: int = 0
    gone: trio.Event = attrs.Factory(trio.Event)

    def fires(self) -> bool:
        """One draw: ``random()`` is below 1 always and below 0 never."""
        return self.rng.random() < self.fault.toxicity

    def new_flow(self) -> Toxic | None:
        """One toxicity draw for a new flow it matches: the flow's toxic, or None."""
        index, self.flows = self.flows, self.flows + 1
        if not self.fires():
            return None
        return Toxic(self.fault, flow_rng(self.fault.seed, index), self.gone)


class Faults:
    """The faults set now, by name, in the order they were added."""

    __slots__ = ("_active", "on")

    def __init__(self) -> None:
        self._active: dict[str, _Active] = {}
        self.on = False  # the one test a flow pays while no fault is set

    def __iter__(self) -> Iterator[Fault]:
        return (active.fault for active in self._active.values())

    def __len__(self) -> int:
        return len(self._active)

    def add(self, fault: Fault) -> None:
        """Set ``fault``; a name already set is ``FaultAlreadyExists`` (as Toxiproxy's 409)."""
        if fault.name in self._active:
            raise LbsimError("FaultAlreadyExists", f"a fault named {fault.name!r} is set")
        self._active[fault.name] = _Active(fault, random.Random(fault.seed))  # noqa: S311 (no secret)
        self.on = True

    def remove(self, name: str) -> Fault:
        """Remove a fault by name (``ResourceNotFound`` if none); connections it holds go."""
        active = self._active.pop(name, None)
        if active is None:
            known = ", ".join(self._active) or "none"
            raise LbsimError("ResourceNotFound", f"no fault named {name!r} (set: {known})")
        active.gone.set()
        self.on = bool(self._active)
        return active.fault

    def tcp(self, port: int, rules: tuple[str, ...], instance: str) -> Toxics | None:
        """The toxics that act on a new TCP flow (one draw per matching fault), or None."""
        up: list[Toxic] = []
        down: list[Toxic] = []
        held: trio.Event | None = None
        for active in self._active.values():
            fault = active.fault
            if fault.type in DATAGRAM_TYPES or not fault.target.matches(port, rules, instance):
                continue
            toxic = active.new_flow()
            if toxic is None:
                continue
            if fault.type is FaultType.DOWN:
                held = held or active.gone
                continue
            (up if fault.stream is Stream.UPSTREAM else down).append(toxic)
        if not up and not down and held is None:
            return None
        return Toxics(tuple(up), tuple(down), held)

    def copies(self, port: int, rules: tuple[str, ...], instance: str, stream: Stream) -> int:
        """How many copies of one UDP datagram go on: 0 (lost, or its instance is down),
        1, or 2 (duplicated)."""
        copies = 1
        for active in self._active.values():
            fault = active.fault
            if not fault.target.matches(port, rules, instance):
                continue
            if fault.type is FaultType.DOWN:
                if fault.toxicity > 0:
                    return 0
                continue
            if fault.stream is not stream or fault.type not in DATAGRAM_TYPES:
                continue
            if active.fires():
                if fault.type is FaultType.LOSS:
                    return 0
                copies = 2
        return copies

    def down(self, instance: str) -> bool:
        """Whether a ``down`` fault names ``instance`` (or everything): its probes fail."""
        for fault in self:
            target = fault.target
            if (
                fault.type is FaultType.DOWN
                and fault.toxicity > 0
                and target.frontend_port is None
                and target.rule is None
                and (target.instance is None or target.instance.lower() == instance.lower())
            ):
                return True
        return False

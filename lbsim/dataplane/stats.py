"""Plain counters that lbsim's data plane bumps and observers read at scrape time.

Hot paths do ``traffic.bytes += n``: plain ints, no locks. lbsim's data plane runs in one
trio thread; a reader in any thread (a Prometheus collector, the API) reads each counter
whole, though two counters read one after the other may be a read apart.

Direction follows Azure's metric dimension: ``inbound`` is client to backend, ``outbound``
is backend to client. ``packets`` counts datagrams for UDP and successful reads for TCP
(lbsim does not see TCP segments).
"""

from __future__ import annotations

import attrs


@attrs.define(slots=True, eq=False)
class Traffic:
    """Bytes and packets moved one way; only ever grows."""

    bytes: int = 0
    packets: int = 0


@attrs.define(slots=True, eq=False)
class RuleStats:
    """Aggregates of one listener (one frontend port of a rule); every field only grows,
    except ``flows_active``, which is the number of flows opened and not yet closed.

    ``flows_total`` is the SYN count for TCP (new flows admitted); ``allowed``/``denied``
    count NSG decisions; ``backend_failures`` counts backends that refused or did not
    answer; ``dropped`` counts datagrams lost to full buffers; ``closes`` counts closed
    flows by reason.
    """

    inbound: Traffic = attrs.Factory(Traffic)
    outbound: Traffic = attrs.Factory(Traffic)
    flows_total: int = 0
    flows_active: int = 0
    allowed: int = 0
    denied: int = 0
    backend_failures: int = 0
    dropped: int = 0
    closes: dict[str, int] = attrs.Factory(dict)

    def open_flow(self, started_at: float) -> FlowStats:
        """A new flow counted here: total and active both go up by one."""
        self.flows_total += 1
        self.flows_active += 1
        return FlowStats(started_at=started_at, rule=self)


@attrs.define(slots=True, eq=False)
class FlowStats:
    """Counters of one flow; whoever moves its bytes also bumps ``rule``'s traffic."""

    started_at: float
    rule: RuleStats
    inbound: Traffic = attrs.Factory(Traffic)
    outbound: Traffic = attrs.Factory(Traffic)
    close_reason: str | None = None

    def close(self, reason: str) -> None:
        """Record the end of the flow once: later calls change nothing."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self.rule.flows_active -= 1
        self.rule.closes[reason] = self.rule.closes.get(reason, 0) + 1

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self.close_reason is not None

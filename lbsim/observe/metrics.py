"""Prometheus metrics modelled on Azure Monitor's load balancer metrics
(https://learn.microsoft.com/en-us/azure/load-balancer/monitor-load-balancer-reference).

The collector reads the runtime's plain counters at scrape time; the data plane never touches
prometheus_client. Names follow Prometheus conventions:

| lbsim metric | Azure Monitor metric |
|---|---|
| ``lbsim_byte_count_total{direction}`` | ByteCount (Direction) |
| ``lbsim_packet_count_total{direction}`` | PacketCount: datagrams for UDP, reads for TCP |
| ``lbsim_syn_count_total`` | SYNCount: new TCP flows admitted |
| ``lbsim_vip_availability`` | VipAvailability: 100 while the frontend port listens |
| ``lbsim_dip_availability`` | DipAvailability: health probe status, 100 up or 0 down |
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from lbsim.dataplane.listeners import Listener
    from lbsim.dataplane.runtime import Runtime

_LISTENER_LABELS = ("load_balancer", "frontend_ip", "frontend_port", "protocol", "rule")


def _labels(listener: Listener) -> list[str]:
    entry = listener.entry
    return [
        entry.load_balancer,
        entry.frontend.address,
        str(entry.frontend_port),
        listener.protocol.value,
        entry.rule_name,
    ]


class RuntimeCollector(Collector):
    """Everything a Runtime counts, as Prometheus metrics."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        self.runtime.count_kernel_drops()  # (read at scrape time, not per datagram)
        yield from self._traffic()
        yield from self._flows()
        yield self._nsg()
        yield from self._availability()
        yield from self._inside()

    def _traffic(self) -> Iterator[Metric]:
        names = ("bytes", "packets")
        docs = (
            "Bytes relayed (ByteCount)",
            "Packets relayed: datagrams, or TCP reads (PacketCount)",
        )
        for name, doc in zip(names, docs, strict=True):
            family = CounterMetricFamily(
                f"lbsim_{name[:-1]}_count", doc, labels=[*_LISTENER_LABELS, "direction"]
            )
            for listener in self.runtime.listeners:
                stats = listener.stats
                for direction, traffic in (
                    ("Inbound", stats.inbound),
                    ("Outbound", stats.outbound),
                ):
                    value = traffic.bytes if name == "bytes" else traffic.packets
                    family.add_metric([*_labels(listener), direction], value)
            yield family

    def _flows(self) -> Iterator[Metric]:
        syn = CounterMetricFamily(
            "lbsim_syn_count", "New TCP flows admitted (SYNCount)", labels=_LISTENER_LABELS
        )
        total = CounterMetricFamily(
            "lbsim_flows",
            "Flows opened (TCP connections, UDP client flows)",
            labels=_LISTENER_LABELS,
        )
        active = GaugeMetricFamily("lbsim_flows_active", "Flows open now", labels=_LISTENER_LABELS)
        failures = CounterMetricFamily(
            "lbsim_backend_connect_failures",
            "Backends that refused or did not answer",
            labels=_LISTENER_LABELS,
        )
        denied = CounterMetricFamily(
            "lbsim_flows_denied", "New flows refused by an NSG", labels=_LISTENER_LABELS
        )
        dropped = CounterMetricFamily(
            "lbsim_datagrams_dropped", "Datagrams lost to full buffers", labels=_LISTENER_LABELS
        )
        closes = CounterMetricFamily(
            "lbsim_flow_closes", "Flows closed, by reason", labels=[*_LISTENER_LABELS, "reason"]
        )
        for listener in self.runtime.listeners:
            labels, stats = _labels(listener), listener.stats
            if listener.protocol.value == "Tcp":
                syn.add_metric(labels, stats.flows_total)
            total.add_metric(labels, stats.flows_total)
            active.add_metric(labels, stats.flows_active)
            failures.add_metric(labels, stats.backend_failures)
            denied.add_metric(labels, stats.denied)
            dropped.add_metric(labels, stats.dropped)
            for reason, count in list(stats.closes.items()):
                closes.add_metric([*labels, reason], count)
        yield from (syn, total, active, failures, denied, dropped, closes)

    def _nsg(self) -> Metric:
        family = CounterMetricFamily(
            "lbsim_nsg_decisions",
            "NSG decisions on new flows, by deciding rule (flow-log name) and access",
            labels=["network_security_group", "level", "rule", "access"],
        )
        for (nsg, level, rule, access), count in list(self.runtime.nsg_decisions.items()):
            family.add_metric([nsg or "(none)", level or "(none)", rule or "(none)", access], count)
        return family

    def _inside(self) -> Iterator[Metric]:
        """Connections inside the virtual network (SSH forwarding, SOCKS, bastion tunnels)
        by outcome (allowed, denied, stopped, unreachable, refused, failed); connections to
        the built-in SSH servers and to the SOCKS endpoint, by outcome."""
        runtime = self.runtime
        for name, doc, counts in (
            ("vnet", "Connections inside the virtual network", runtime.vnet.counts),
            ("ssh", "Connections to built-in instances' SSH servers", runtime.ssh.counts),
            ("socks", "Connections to the SOCKS endpoint", runtime.socks.counts),
        ):
            family = CounterMetricFamily(
                f"lbsim_{name}_connections", f"{doc}, by outcome", labels=["outcome"]
            )
            for outcome, count in sorted(counts.items()):
                family.add_metric([outcome], count)
            yield family

    def _availability(self) -> Iterator[Metric]:
        vip = GaugeMetricFamily(
            "lbsim_vip_availability",
            "Data path availability in percent (VipAvailability)",
            labels=["frontend_ip", "frontend_port", "protocol"],
        )
        for listener in self.runtime.listeners:
            up = 100.0 if listener.bound is not None else 0.0
            vip.add_metric(
                [
                    listener.entry.frontend.address,
                    str(listener.entry.frontend_port),
                    listener.protocol.value,
                ],
                up,
            )
        yield vip
        dip = GaugeMetricFamily(
            "lbsim_dip_availability",
            "Health probe status of a backend in percent (DipAvailability)",
            labels=["load_balancer", "probe", "backend", "backend_ip", "backend_port", "protocol"],
        )
        for state in list(self.runtime.probes):
            probe, backend = state.probe, state.backend
            labels = [probe.load_balancer, probe.name, backend.label, backend.private_ip_address]
            up = 100.0 if state.healthy else 0.0
            dip.add_metric([*labels, str(probe.port), probe.protocol.value], up)
        yield dip

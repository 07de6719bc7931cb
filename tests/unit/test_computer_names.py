"""Computer names (hostnames) as Azure forms them: a scale set's prefix and the instance id in
base 36, six digits; a VM's osProfile.computerName, else its name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jumpboxes import jumpbox_nic, network, public_ip, virtual_machine
from templates import ip_configuration, load, plan_of, scale_set, template

from lbsim.control.fleet import Fleet, Instance, ScaleSetState
from lbsim.control.plan import plan
from lbsim.model import VirtualMachineScaleSet
from lbsim.model.compute import base36


@pytest.mark.parametrize(
    ("number", "digits"), [(0, "0"), (9, "9"), (10, "A"), (35, "Z"), (36, "10"), (85, "2D")]
)
def test_base36_is_upper_case_without_padding(number: int, digits: str) -> None:
    assert base36(number) == digits


@given(st.integers(min_value=0, max_value=36**6 - 1))
def test_base36_reads_back_as_the_number(number: int) -> None:
    assert int(base36(number), 36) == number


def test_instance_85_of_prefix_nsgvmss_is_nsgvmss00002d() -> None:
    vmss = VirtualMachineScaleSet("id", "web", 1, computer_name_prefix="nsgvmss")
    assert vmss.computer_name(85) == "nsgvmss00002D"
    assert vmss.computer_name(0) == "nsgvmss000000"


def test_a_planned_instance_has_its_computer_name_from_a_prefix_expression() -> None:
    doc = template(scale_set("vmss", 1), parameters={"role": {"type": "string"}})
    profile = doc["resources"][0]["properties"]["virtualMachineProfile"]["osProfile"]
    profile["computerNamePrefix"] = "[concat('nsg', parameters('role'))]"
    deployment = load(doc, parameters_file={"parameters": {"role": {"value": "vmss"}}})
    fleet = Fleet({"vmss": ScaleSetState((Instance(85), Instance(3)), 86, 1, "vmss")})
    result = plan(deployment, fleet=fleet)
    assert [(b.label, b.computer_name) for b in result.backends] == [
        ("vmss/85", "nsgvmss00002D"),
        ("vmss/3", "nsgvmss000003"),
    ]


def test_without_a_prefix_the_scale_sets_name_stands_for_it() -> None:
    doc = template(scale_set("web", 2, ip_configuration()))
    del doc["resources"][0]["properties"]["virtualMachineProfile"]["osProfile"][
        "computerNamePrefix"
    ]
    assert [b.computer_name for b in plan_of(doc).backends] == ["web000000", "web000001"]


def test_a_vms_computer_name_is_its_os_profiles_else_its_name() -> None:
    doc = template(
        network(),
        public_ip("jumpbox-pip"),
        jumpbox_nic("named-nic"),
        jumpbox_nic("plain-nic", pip=None),
        jumpbox_nic("lonely-nic", pip=None),
        virtual_machine("named", "named-nic", computer_name="[toUpper('jump01')]"),
        virtual_machine("plain", "plain-nic", os="windows"),
    )
    backends = {b.name: b for b in plan_of(doc).backends}
    assert backends["named"].computer_name == "JUMP01"
    assert backends["plain"].computer_name == "plain"
    assert backends["plain"].os_type == "Windows"  # a NIC's backend knows its VM's OS now
    assert backends["lonely-nic"].computer_name == ""  # a NIC no VM uses: no computer

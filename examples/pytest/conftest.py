"""lbsim's pytest plugin runs this folder's template for the whole session; the tests get
its handle as the ``lbsim`` fixture. Copy the folder and point ``lbsim_template`` at your
own template (and ``lbsim_parameters`` at your parameters)."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def lbsim_template() -> Path:
    return HERE / "azuredeploy.json"


@pytest.fixture(scope="session")
def lbsim_parameters() -> dict[str, object]:
    return {"instanceCount": 3, "officeRange": "203.0.113.0/24"}


@pytest.fixture(scope="session")
def lbsim_config() -> dict[str, object]:
    # The NSGs see this machine's own connections (from 127.0.0.1) as a client in the office.
    return {"sources": {"127.0.0.1": "203.0.113.10"}}

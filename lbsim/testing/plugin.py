"""lbsim's pytest plugin: a running load balancer of the template a user deploys, as a
fixture.

- ``lbsim_template``: the template's path (``--lbsim-template``, the ``lbsim_template`` ini
  option, or a fixture of that name in ``conftest.py``);
- ``lbsim_parameters``: a parameters file's path or a mapping of values (default none);
- ``lbsim_config``: settings, as ``lbsim.toml``'s keys (default none);
- ``lbsim``: the running load balancer, the handle of :func:`lbsim.run_in_thread` (so plain
  synchronous tests use it); its scope is the ``lbsim_scope`` ini option (``session``);
- ``lbsim_factory``: starts more load balancers in one test, each stopped at its end.

``@pytest.mark.lbsim(template=..., parameters=..., config=...)`` gives one test a load
balancer of its own (the ``lbsim`` fixture is then function-scoped for that test). Ports: the
``port_map`` setting is ``per-worker`` under pytest-xdist (each worker on loopback addresses
of its own) and ``azure`` otherwise, unless ``--lbsim-port-map`` or the config says; a control
API asked for (any ``api_port``, or its alias ``metrics_port``, but ``off``) takes a free
port. Only pytest is imported here until a fixture runs, so that the plugin costs nothing to
test suites that do not use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from lbsim.api.library import ThreadedLoadBalancer
    from lbsim.errors import LbsimError

Parameters = Mapping[str, Any] | str | Path | None
Factory = Callable[..., "ThreadedLoadBalancer"]
Scope = Literal["session", "package", "module", "class", "function"]
SCOPES: tuple[Scope, ...] = ("session", "package", "module", "class", "function")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lbsim", "lbsim: an Azure load balancer of your template")
    group.addoption(
        "--lbsim-template",
        dest="lbsim_template",
        metavar="PATH",
        help="the ARM template the lbsim fixture runs",
    )
    group.addoption(
        "--lbsim-port-map",
        dest="lbsim_port_map",
        metavar="MAP",
        help="where lbsim listens: azure, per-worker[:N], offset:N or ephemeral "
        "(default: per-worker under pytest-xdist, else azure)",
    )
    parser.addini(
        "lbsim_template", "the ARM template the lbsim fixture runs (relative: to rootdir)"
    )
    parser.addini("lbsim_port_map", "lbsim's port map (as --lbsim-port-map)")
    parser.addini("lbsim_scope", "the scope of the lbsim fixture", default="session")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lbsim(template=None, parameters=None, config=None): this test gets a load balancer "
        "of its own for the lbsim fixture (relative paths: from the test file's folder)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``lbsim`` gets the ``lbsim`` fixture at function scope, with the
    marker's arguments (pytest's indirect parametrization may narrow a fixture's scope)."""
    marker = metafunc.definition.get_closest_marker("lbsim")
    if marker is None or "lbsim" not in metafunc.fixturenames:
        return
    wanted = dict(marker.kwargs)
    if marker.args:
        wanted.setdefault("template", marker.args[0])
    wanted["folder"] = metafunc.definition.path.parent
    metafunc.parametrize("lbsim", [wanted], indirect=True, scope="function", ids=["lbsim"])


def _scope(fixture_name: str, config: pytest.Config) -> Scope:
    wanted = str(config.getini("lbsim_scope") or "session").strip()
    for scope in SCOPES:
        if scope == wanted:
            return scope
    raise pytest.UsageError(f"lbsim_scope = {wanted}: choose one of {', '.join(SCOPES)}")


@pytest.fixture(scope="session")
def lbsim_template(pytestconfig: pytest.Config) -> Path:
    """The template's path: ``--lbsim-template``, else the ``lbsim_template`` ini option.
    Override this fixture in ``conftest.py`` (session-scoped) to name your own."""
    option = pytestconfig.getoption("lbsim_template")
    if option:
        return Path(pytestconfig.invocation_params.dir, option)
    ini = pytestconfig.getini("lbsim_template")
    if ini:
        return Path(pytestconfig.rootpath, str(ini))
    raise pytest.UsageError(
        "lbsim: which template? Give --lbsim-template, the lbsim_template ini option, or "
        "a session-scoped lbsim_template fixture in conftest.py."
    )


@pytest.fixture(scope="session")
def lbsim_parameters() -> Parameters:
    """The template's parameters: a mapping of values, a parameters file's path, or None."""
    return None


@pytest.fixture(scope="session")
def lbsim_config() -> Mapping[str, Any]:
    """lbsim's settings, as ``lbsim.toml``'s keys (``{"sources": {...}}``)."""
    return {}


@pytest.fixture(scope=_scope)
def lbsim(request: pytest.FixtureRequest) -> Iterator[ThreadedLoadBalancer]:
    """The running load balancer; ``@pytest.mark.lbsim(...)`` gives a test its own. The
    suite's ``lbsim_template``, ``lbsim_parameters`` and ``lbsim_config`` are asked for only
    when the marker does not name them, so a suite whose tests all name a template in their
    marker needs no ``lbsim_template``."""
    marked: dict[str, Any] = getattr(request, "param", None) or {}
    folder = Path(marked.get("folder", "."))
    own = marked.get("template") is not None  # another template: none of the suite's own
    template = folder / marked["template"] if own else request.getfixturevalue("lbsim_template")
    parameters: Parameters = marked.get("parameters")
    if isinstance(parameters, str | Path):
        parameters = folder / parameters
    elif parameters is None and not own:
        parameters = request.getfixturevalue("lbsim_parameters")
    config: Mapping[str, Any] | None = marked.get("config")
    if config is None:
        config = {} if own else request.getfixturevalue("lbsim_config")
    with start(request.config, template, parameters, config) as lb:
        yield lb


@pytest.fixture
def lbsim_factory(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """``lbsim_factory(template, parameters=None, config=None)`` starts one more load
    balancer and returns its handle; each is stopped when the test ends. Two of one
    template on one worker need ``config={"port_map": "ephemeral"}`` (or an offset)."""
    with contextlib.ExitStack() as stack:

        def make(
            template: str | Path,
            parameters: Parameters = None,
            config: Mapping[str, Any] | None = None,
        ) -> ThreadedLoadBalancer:
            handle: ThreadedLoadBalancer = stack.enter_context(
                start(request.config, Path(template), parameters, config)
            )
            return handle

        yield make


@contextlib.contextmanager
def start(
    pytest_config: pytest.Config,
    template: Path,
    parameters: Parameters,
    config: Mapping[str, Any] | None,
) -> Iterator[ThreadedLoadBalancer]:
    """:func:`lbsim.run_in_thread` with the plugin's settings: its port map, a free port
    for a control API asked for (under any of ``api_port``'s keys). A template or setting
    lbsim refuses fails the test with every problem, one per line, and no traceback."""
    from lbsim.api.library import run_in_thread  # noqa: PLC0415 (only once a test needs it)
    from lbsim.errors import LbsimError  # noqa: PLC0415

    settings = _settings(pytest_config, config)
    options: dict[str, Any] = {"config": settings}
    options["params" if isinstance(parameters, Mapping) else "parameters"] = parameters
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(run_in_thread(template, **options))
        except LbsimError as error:
            refused: str | None = _refusal(error, template)
        else:
            refused = None
        if refused is not None:  # (out of the except: no "during handling" chain shown)
            pytest.fail(refused, pytrace=False)
        yield handle


def _settings(pytest_config: pytest.Config, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings lbsim runs with: the suite's, the plugin's port map unless they name
    one, and port 0 (a free one) for a control API asked for under any key of the setting
    (``api_port`` or its alias ``metrics_port``): fixed ports collide under xdist."""
    from lbsim.api.config import SETTINGS  # noqa: PLC0415 (only once a test needs it)

    if config is not None and not isinstance(config, Mapping):
        raise pytest.UsageError(
            f"lbsim_config: a mapping of lbsim.toml's keys, not {type(config).__name__} "
            "(read a TOML file with tomllib.load into one)"
        )
    settings = dict(config or {})
    settings.setdefault("port_map", port_map(pytest_config))
    api_keys = next((s.keys for s in SETTINGS if s.key == "api_port"), ("api_port",))
    for key in api_keys:
        if key in settings and str(settings[key]).lower() != "off":
            settings[key] = 0
    return settings


def _refusal(error: LbsimError, template: Path) -> str:
    """What lbsim refused, one problem a line (``file#/pointer: Code: message``)."""
    from lbsim.errors import TemplateInvalid  # noqa: PLC0415

    if isinstance(error, TemplateInvalid):
        problems = [str(problem.located(str(template))) for problem in error.problems]
    else:
        problems = [str(error.problem())]
    count = f"{len(problems)} problems" if len(problems) > 1 else "a problem"
    return "\n".join([f"lbsim could not start {template} ({count}):", *problems])


def port_map(config: pytest.Config) -> str:
    """The port map asked for, else per-worker under pytest-xdist, else azure."""
    asked = config.getoption("lbsim_port_map") or config.getini("lbsim_port_map")
    if asked:
        return str(asked)
    return "per-worker" if os.environ.get("PYTEST_XDIST_WORKER") else "azure"

"""Nested deployments (``Microsoft.Resources/deployments``): inline templates with inner or
outer expression scope, and linked templates that resolve to a local file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from lbsim.arm.deepeval import copy_count, evaluate_value
from lbsim.arm.limits import LimitExceeded
from lbsim.arm.order import chain
from lbsim.arm.scope import Scope, TemplateState
from lbsim.errors import LbsimError, Problem, Severity, TemplateInvalid
from lbsim.pointer import Pointer

if TYPE_CHECKING:
    from lbsim.arm.loader import Loader
    from lbsim.arm.resources import ExpandedResource


def nested_template(
    loader: Loader, deployment: ExpandedResource
) -> tuple[Any, str | None, Pointer] | None:
    """The nested template of ``deployment``: (raw template, file, pointer of the template)."""
    raw_props = deployment.raw.get("properties")
    if isinstance(raw_props, Mapping) and isinstance(raw_props.get("template"), Mapping):
        return raw_props["template"], deployment.file, deployment.at / "properties" / "template"
    props = deployment.evaluate_body().get("properties") or {}
    link = props.get("templateLink") if isinstance(props, Mapping) else None
    target = None
    if isinstance(link, Mapping):
        target = link.get("relativePath") or link.get("uri") or link.get("id")
    if not isinstance(target, str) or not _readable(loader, deployment, target):
        return None
    found = _resolve(loader, deployment, target)
    if found is None:
        return None
    if is_remote(target):
        _warn(
            loader,
            deployment,
            "LinkedTemplateMapped",
            f"The linked template of deployment '{deployment.name}' is read from a local "
            f"file: {target} -> {found[1]}.",
        )
    return found[0], found[1], Pointer.root(found[1])


def is_remote(target: str) -> bool:
    """A link by URL (https://...), as opposed to a ``file:`` URI or a relative path."""
    scheme = urlsplit(target).scheme.lower()
    return "://" in target and scheme not in ("", "file")


def _readable(loader: Loader, deployment: ExpandedResource, target: str) -> bool:
    """Whether ``target`` parses as a URL (a path always does). ``http://[::1`` does not:
    every resolver would fail on it, so it is an error here, at the link, for all of them."""
    try:
        urlsplit(target)
    except ValueError as error:
        shown = repr(target[:200]) + ("..." if len(target) > 200 else "")
        message = f"The linked template {shown} is not a URL lbsim can read: {error}."
        at = deployment.at / "properties" / "templateLink"
        loader.problems.append(Problem("LinkedTemplatePathInvalid", message, at, deployment.file))
        return False
    return True


def _resolve(loader: Loader, deployment: ExpandedResource, target: str) -> tuple[Any, str] | None:
    """The linked template's local copy, or None after a warning that says why not."""
    try:
        found = loader.resolve_link(target, deployment.file)
    except TemplateInvalid as error:  # the local copy is not valid JSON: its own file's errors
        loader.problems.extend(error.problems)
        return None
    except LbsimError as error:  # the link map names a file that cannot be read
        at = deployment.at / "properties" / "templateLink"
        loader.problems.append(Problem(error.code, error.message, at, deployment.file))
        return None
    documents = _documents(deployment.scope.state)
    if found is not None and (found[1] in documents or len(documents) > MAX_DEPTH):
        _warn(
            loader,
            deployment,
            "LinkedTemplateCycle",
            f"The linked template '{target}' of deployment '{deployment.name}' resolves to "
            f"{found[1]}, which is already being deployed (or nesting passes {MAX_DEPTH} "
            "levels); its resources are not emulated.",
        )
        return None
    if found is None:
        where = "local copy at the same path" if is_remote(target) else "local file there"
        _warn(
            loader,
            deployment,
            "LinkedTemplateNotFound",
            f"The linked template '{target}' of deployment '{deployment.name}' has no "
            f"{where} under the folder of {deployment.file or 'the template'} "
            "(map a URL with --link URL=FILE); its resources are not emulated.",
        )
    return found


def _warn(loader: Loader, deployment: ExpandedResource, code: str, message: str) -> None:
    at = deployment.at / "properties" / "templateLink"
    loader.problems.append(Problem(code, message, at, deployment.file, Severity.WARNING))


MAX_DEPTH = 10


def _documents(state: TemplateState | None) -> list[str | None]:
    """The files of a template and of every template that deploys it."""
    out: list[str | None] = []
    while state is not None:
        out.append(state.file)
        state = state.parent
    return out


def nested_state(
    loader: Loader, deployment: ExpandedResource, template: Any, file: str | None, at: Pointer
) -> TemplateState:
    """The TemplateState of a nested template, with its parameters bound."""
    outer = deployment.scope.state
    props = deployment.evaluate_body().get("properties") or {}
    options = props.get("expressionEvaluationOptions") if isinstance(props, Mapping) else None
    inline = bool(at.parts)
    mode = str(options.get("scope", "outer") if isinstance(options, Mapping) else "outer").lower()
    context = attrs.evolve(outer.deployment, deployment_name=deployment.name)
    link = props.get("templateLink") if isinstance(props, Mapping) else None
    extra: dict[str, Any] = {"templateLink": link} if isinstance(link, Mapping) else {}
    given = props.get("parameters") if isinstance(props, Mapping) else None
    extra["parameters"] = given if isinstance(given, Mapping) else {}  # as given, for deployment()
    state = TemplateState(loader, template, file, at, context, {"template": template, **extra})
    state.parent = outer
    if inline and mode == "outer":
        state.parameters = outer.parameters
        state.variables_raw, state.variables = outer.variables_raw, outer.variables
        state.user_functions = outer.user_functions
        return state
    supplied = props.get("parameters") if isinstance(props, Mapping) else None
    loader.bind_template(state, _values(supplied, deployment.at / "properties" / "parameters"))
    return state


def _values(supplied: Any, at: Pointer) -> dict[str, tuple[Any, Pointer]]:
    if not isinstance(supplied, Mapping):
        return {}
    return {
        name: (entry.get("value"), at / name / "value")
        for name, entry in supplied.items()
        if isinstance(entry, Mapping)
    }


def outputs(state: TemplateState, problems: list[Problem] | None = None) -> dict[str, Any]:
    """A template's ``outputs`` as ``reference()`` shows them (``{name: {type, value}}``).
    With ``problems``, an output that fails is reported there and left out; without, the
    error propagates."""
    raw = state.raw.get("outputs")
    out: dict[str, Any] = {}
    for name, decl in raw.items() if isinstance(raw, Mapping) else ():
        at = state.base / "outputs" / name
        try:
            value = _output(decl, Scope(state), at)
        except LimitExceeded:
            raise
        except LbsimError as error:
            if problems is None:
                raise
            problems.append(error.problem(state.file))
            continue
        if value is not _SKIPPED:
            out[name] = {"type": decl.get("type", "String"), "value": value}
    return out


_SKIPPED = object()


def _output(decl: Any, scope: Scope, at: Pointer) -> Any:
    """One output's value: ``value``, or the array of an output ``copy`` loop."""
    if not isinstance(decl, Mapping):
        return _SKIPPED
    if "condition" in decl and not evaluate_value(decl["condition"], scope, at / "condition"):
        return _SKIPPED
    loop = decl.get("copy")
    if isinstance(loop, Mapping):
        count = copy_count(loop.get("count"), scope, at / "copy" / "count")
        element = at / "copy" / "input"
        return [
            evaluate_value(loop.get("input"), scope.with_copy(None, i), element)
            for i in range(count)
        ]
    return evaluate_value(decl.get("value"), scope, at / "value") if "value" in decl else _SKIPPED


def in_deployments(
    problems: Sequence[Problem], resources: Sequence[ExpandedResource]
) -> list[Problem]:
    """Each problem in the file its pointer points into, and, when it lies inside a nested or
    linked deployment, with that deployment's chain of names (outer to inner): the same
    linked file may be deployed by several deployments, with other parameters."""
    states = {id(r.scope.state): r.scope.state for r in resources}
    states.update({id(r.nested): r.nested for r in resources if r.nested is not None})
    return [_placed(p, list(states.values())) for p in problems]


def _placed(problem: Problem, states: list[TemplateState]) -> Problem:
    at = problem.at
    if at is None:
        return problem
    document = at.document or problem.file
    if document != problem.file:
        problem = attrs.evolve(problem, file=document)
    inside = [s for s in states if s.file == document and at.parts[: len(s.base)] == s.base.parts]
    if not inside:
        return problem
    depth = max(len(s.base) for s in inside)
    chains = {" > ".join(f"'{n}'" for n in chain(s)) for s in inside if len(s.base) == depth}
    chains.discard("")
    if not chains:
        return problem
    where = " or ".join(sorted(chains))
    return attrs.evolve(problem, message=f"{problem.message} (in deployment {where})")

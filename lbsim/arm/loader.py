"""Template text to ``Deployment``: the ARM side of lbsim's control plane.

The steps are Azure's: check the template's shape, bind parameters, expand resources (copy
loops, conditions, child resources, nested deployments), evaluate every expression, check
each resource against lbsim's JSON Schemas, and convert to the model. Every problem found on
the way is gathered; if any is an error, one ``TemplateInvalid`` carries them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from lbsim.arm import limits, secrets
from lbsim.arm import parameters as params
from lbsim.arm.binding import Binder, user_functions
from lbsim.arm.context import Placeholder, RuntimeObject
from lbsim.arm.convert import convert
from lbsim.arm.counts import check_size, count_resource, counted
from lbsim.arm.limits import LimitExceeded
from lbsim.arm.nested import in_deployments, nested_state, nested_template, outputs
from lbsim.arm.order import settle
from lbsim.arm.resources import DEPLOYMENTS, ExpandedResource, declared_resources, expand
from lbsim.arm.runtime import field, full_object, runtime_properties
from lbsim.arm.schema import validate_resource, validate_template
from lbsim.arm.scope import Scope, TemplateState
from lbsim.arm.sourcemap import SourceMap
from lbsim.arm.spelling import misspelt_properties
from lbsim.errors import LbsimError, Problem, Severity, TemplateInvalid
from lbsim.model.deployment import Deployment, DeploymentContext, NotEmulatedResource
from lbsim.pointer import Pointer

LOAD_BALANCERS = "microsoft.network/loadbalancers"
SUPPORTED_LANGUAGE_VERSION = "2."  # symbolic names; "2.0" and "2.1-experimental" alike
LinkResolver = Callable[[str, str | None], tuple[Any, str] | None]


@attrs.frozen
class LoadOptions:
    context: DeploymentContext = DeploymentContext()
    parameters_file: Any = None  # a parsed deploymentParameters document
    parameters_file_name: str | None = None
    cli_parameters: Mapping[str, str] = attrs.Factory(dict)
    fill_missing: bool = False
    resolve_link: LinkResolver | None = None  # (uri or path, from file) -> (template, file)
    template_link: str | None = None  # deployment().properties.templateLink.uri, if any


def load_template(
    template: Any, file: str | None = None, options: LoadOptions | None = None
) -> Deployment:
    """The Deployment ``template`` describes; raises TemplateInvalid listing every error."""
    return Loader(options or LoadOptions()).run(template, file)


class Loader:
    """The mutable state of one load: every resource found, and every problem."""

    def __init__(self, options: LoadOptions) -> None:
        self.options = options
        self.sourcemap = SourceMap()
        self.problems: list[Problem] = []
        self.resources: list[ExpandedResource] = []
        self.current: tuple[str | None, Pointer | None] = (None, None)
        self._by_id: dict[str, ExpandedResource] = {}
        self._by_name: dict[str, list[ExpandedResource]] = {}
        self._public_ips: dict[str, str] = {}
        self._warned: set[tuple[str, str]] = set()
        self._validated: set[int] = set()
        self.secrets: set[str] = set()  # the strings of secure parameters' values

    # --- the steps --------------------------------------------------------------------------
    def run(self, template: Any, file: str | None) -> Deployment:
        """The deployment, within lbsim's limits of time, size and depth (lbsim.arm.limits):
        a breach ends the load at once, with the problems found so far."""
        try:
            with limits.deadline():
                return self._run(template, file)
        except LimitExceeded as error:
            self._check([*self.problems, error.problem(file)])
            raise
        except RecursionError:
            message = "The template nests values or calls too deeply for lbsim to follow."
            at = Pointer.root(file)
            self._check([*self.problems, Problem("JsonNestedTooDeep", message, at, file)])
            raise

    def _run(self, template: Any, file: str | None) -> Deployment:
        self._check(self._shape(template, file, Pointer.root(file)))
        link = self.options.template_link
        props: dict[str, Any] = {"templateLink": {"uri": link}} if link else {}
        props["template"] = template
        props["parameters"] = params.given_parameters(
            template, self.options.parameters_file, self.options.cli_parameters
        )
        root = TemplateState(self, template, file, Pointer.root(file), self.options.context, props)
        self.bind_template(root, self._supplied_values(), cli=self.options.cli_parameters)
        self._check(self.problems)
        self._expand_template(root)
        self._expand_deployments()
        deployed = self._settle()
        self._evaluate_all()
        results = outputs(root, self.problems)
        deployment, found = convert(deployed, self.sourcemap, self.public_ip_address)
        # a value the schemas already rejected is not reported again by the conversion
        known = {(p.file, p.at) for p in self.problems if p.severity is Severity.ERROR}
        self.problems += [p for p in found if (p.file, p.at) not in known]
        self.problems = in_deployments(self.problems, self.resources)
        self._check(self.problems)
        unresolved = [  # a linked template lbsim has no copy of
            NotEmulatedResource(r.type, r.name, at=r.at)
            for r in deployed
            if r.type_key == DEPLOYMENTS and r.nested is None
        ]
        return attrs.evolve(
            deployment,
            not_emulated=(*deployment.not_emulated, *unresolved),
            context=self.options.context,
            warnings=tuple(self._warnings()),
            outputs=tuple((name, _shown_output(o)) for name, o in results.items()),
        )

    def _check(self, problems: list[Problem]) -> None:
        errors = list(dict.fromkeys(p for p in problems if p.severity is Severity.ERROR))
        if errors:
            raise TemplateInvalid(secrets.redact(errors, self.secrets))

    def _warnings(self) -> list[Problem]:
        warnings = [p for p in self.problems if p.severity is Severity.WARNING]
        return secrets.redact(warnings, self.secrets)

    def _shape(self, template: Any, file: str | None, at: Pointer) -> list[Problem]:
        version = template.get("languageVersion") if isinstance(template, Mapping) else None
        if version is not None and not str(version).startswith(SUPPORTED_LANGUAGE_VERSION):
            msg = (
                f"The template's languageVersion '{version}' is not supported: lbsim reads "
                f"templates without one and languageVersion {SUPPORTED_LANGUAGE_VERSION}x."
            )
            return [Problem("InvalidTemplate", msg, at / "languageVersion", file)]
        deep = limits.too_deep(template)
        if deep is not None:  # schemas and source maps walk it: refuse it before they do
            error = limits.deep_value_error(deep, at)
            return [Problem(error.code, error.message, error.at, file)]
        found = [
            Problem(v.code, v.message, at.join(v.path), file) for v in validate_template(template)
        ]
        return found + counted(template, file, at)

    # --- parameters, variables, functions -----------------------------------------------------
    def _supplied_values(self) -> dict[str, tuple[Any, Pointer]]:
        raw = self.options.parameters_file
        if raw is None:
            return {}
        values, problems = params.file_values(raw, Pointer.root(self.options.parameters_file_name))
        self.problems += [p.located(self.options.parameters_file_name) for p in problems]
        return values

    def bind_template(
        self,
        state: TemplateState,
        supplied: Mapping[str, tuple[Any, Pointer]],
        cli: Mapping[str, str] | None = None,
    ) -> None:
        """Give ``state`` its parameter values, variables and user functions."""
        binder = Binder(state, supplied, cli or {}, self.options.fill_missing, self.problems)
        binder.bind(self.options.parameters_file_name)
        state.declare_variables(state.raw.get("variables"), state.base / "variables")
        state.user_functions = user_functions(state.raw.get("functions"), state.base / "functions")

    # --- resources ------------------------------------------------------------------------------
    def _expand_template(self, state: TemplateState) -> None:
        base = state.base / "resources"
        for symbolic, raw, at in declared_resources(state.raw.get("resources"), base):
            if not isinstance(raw, Mapping):
                continue
            try:
                for resource in expand(raw, at, Scope(state), symbolic=symbolic):
                    self._add(resource)
                    count_resource(state, len(self.resources), at)
            except LimitExceeded:
                raise
            except LbsimError as error:
                self.problems.append(error.problem(state.file))

    def _add(self, resource: ExpandedResource) -> None:
        self.resources.append(resource)
        self._by_id[resource.id.lower()] = resource
        for key in (resource.name, f"{resource.type}/{resource.name}", resource.symbolic):
            if key:
                self._by_name.setdefault(key.lower(), []).append(resource)

    def _expand_deployments(self) -> None:
        done: set[int] = set()
        while pending := [
            r for r in self.resources if r.type_key == DEPLOYMENTS and id(r) not in done
        ]:
            for resource in pending:
                done.add(id(resource))
                self._expand_deployment(resource)

    def _expand_deployment(self, resource: ExpandedResource) -> None:
        try:
            found = nested_template(self, resource)
            if found is None:
                return
            template, file, at = found
            self.problems += self._shape(template, file, at)
            resource.nested = nested_state(self, resource, template, file, at)
            self._expand_template(resource.nested)
        except LimitExceeded:
            raise
        except LbsimError as error:
            self.problems.append(error.problem(resource.file))

    def _settle(self) -> list[ExpandedResource]:
        """The resources to convert: one per id, the last deployed (see lbsim.arm.order)."""
        deployed, problems = settle(self.resources)
        self.problems += problems
        self._by_id.update({r.id.lower(): r for r in deployed if not r.existing})
        return deployed

    def _evaluate_all(self) -> None:
        balancers = [r for r in self.resources if r.type_key == LOAD_BALANCERS]
        for resource in balancers:
            self._evaluate(resource)
            self._number_frontend_ips(resource)
        for resource in self.resources:
            if resource.type_key != LOAD_BALANCERS:
                self._evaluate(resource)

    def _number_frontend_ips(self, balancer: ExpandedResource) -> None:
        """Public IPs of load balancer frontends take the first loopback addresses."""
        frontends = field(field(balancer.body, "properties"), "frontendIPConfigurations")
        for frontend in frontends if isinstance(frontends, list) else []:
            ref = field(field(frontend, "properties"), "publicIPAddress")
            ref_id = field(ref, "id")
            target = self.find(ref_id) if isinstance(ref_id, str) else None
            if target is not None:
                self.public_ip_address(target)

    def _evaluate(self, resource: ExpandedResource) -> None:
        """Evaluate a resource (if ``reference()`` has not already) and check its schema."""
        if id(resource) in self._validated:
            return
        self._validated.add(id(resource))
        try:
            body = resource.evaluate_body()
        except LimitExceeded:
            raise
        except LbsimError as error:
            self.problems.append(error.problem(resource.file))
            return
        check_size(resource, body)
        for v in validate_resource(_without_nulls(body)):
            at = self.sourcemap.locate(body, v.path, resource.at)
            self.problems.append(Problem(v.code, v.message, at, resource.file))
        for v in misspelt_properties(body):  # Azure ignores them: a warning, not an error
            at = self.sourcemap.locate(body, v.path, resource.at)
            self.problems.append(Problem(v.code, v.message, at, resource.file, Severity.WARNING))

    # --- what expressions ask of the loader -------------------------------------------------------
    def find(self, name_or_id: str) -> ExpandedResource | None:
        key = name_or_id.lower()
        if key in self._by_id:
            return self._by_id[key]
        # a resource deployed twice is one resource: the definition that stays
        ids = {r.id.lower() for r in self._by_name.get(key, [])}
        return self._by_id[ids.pop()] if len(ids) == 1 else None

    def reference(self, name_or_id: str, full: bool, scope: Scope) -> Any:
        resource = self.find(name_or_id)
        if resource is None or resource.existing:
            self.warn(
                "ReferenceOutsideTemplate",
                f"reference('{name_or_id}') names a resource outside the template; "
                "lbsim uses placeholders.",
            )
            return Placeholder(f"<reference {name_or_id}>")
        if resource.type_key == DEPLOYMENTS:
            props: dict[str, Any] = {"provisioningState": "Succeeded"}
            props["outputs"] = outputs(resource.nested) if resource.nested else RuntimeObject()
        else:
            props = runtime_properties(resource, self.public_ip_address)
        return full_object(resource, props) if full else props

    def list_keys(self, resource_id: str) -> Any:
        self.warn(
            "ListFunctionPlaceholder",
            f"A list* function on '{resource_id}' returns placeholders in lbsim.",
        )
        return Placeholder(f"<keys of {resource_id}>")

    def public_ip_address(self, resource: ExpandedResource) -> str:
        """The loopback address that stands for a public IP, in order of first use."""
        key = resource.id.lower()
        if key not in self._public_ips:
            self._public_ips[key] = f"127.0.0.{len(self._public_ips) + 1}"
        return self._public_ips[key]

    def resolve_link(self, target: str, from_file: str | None) -> tuple[Any, str] | None:
        resolver = self.options.resolve_link
        return resolver(target, from_file) if resolver else None

    def warn(self, code: str, message: str) -> None:
        file, at = self.current
        if (code, message) in self._warned:
            return
        self._warned.add((code, message))
        self.problems.append(Problem(code, message, at, file, Severity.WARNING))


def _shown_output(output: Mapping[str, Any]) -> Any:
    """An output's value, or none for a secure output: Azure returns none."""
    kind = output.get("type")
    return secrets.SecureValue(str(kind)) if secrets.is_secure(kind) else output["value"]


def _without_nulls(value: Any) -> Any:
    """A copy without null properties: Azure treats ``"x": null`` as ``x`` not set. Array
    elements stay, so paths into the copy are paths into the original."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value

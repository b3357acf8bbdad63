"""Connector registration files: what a department declares about its system.

Example (``connectors/registrations/gongan-household.yaml``)::

    name: gongan-household
    department: 天津市公安局武清分局
    dataset: household              # the data contract id
    contract: {major: 1}            # ... and the major version it was tested against
    type: sql
    options:
      url: sqlite:///{home}/departments/gongan/household.db
      table: household_member
      cursor: {column: updated_at, tiebreak: id}
    secrets:                        # the NAME of an environment variable / Prefect Secret,
      password: ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD   # in the connector's own namespace
    schedule: "0 2 * * *"

``{home}`` in option strings expands to ``ONCEONLY_HOME``. Secret values never appear in a
registration file, only their names: a password inside a URL (``postgresql://reader:pw@host``),
credentials before the ``@`` of an HTTP URL, or a credential in a query string (``?token=``,
``?password=``, also in ``params``) is refused, naming the option and never the value.

A file is checked against :func:`registration_schema` (the JSON Schema generated from these
models and each connector type's ``options_model``); every problem is reported with the file,
the LINE and the field, e.g. ``gongan.yaml: line 9, options.cursor.tiebreak: Field required``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from onceonly.errors import ConfigurationError, UnknownConnectorType
from onceonly.yamlfile import read_yaml

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]{0,127}$")
# Query parameters that carry a credential (lower case); also refused as keys of `params`.
_CREDENTIAL_PARAMS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "secret", "client_secret", "token", "access_token",
        "auth_token", "id_token", "refresh_token", "api_key", "apikey", "key", "signature", "sig",
    }
)  # fmt: skip
_SECRETS_HINT = (
    "name it under `secrets:` instead (e.g. `secrets: {password: ONCEONLY_SECRET_<CONNECTOR>_PASSWORD}` "
    "for a database, `secrets: {token: ONCEONLY_SECRET_<CONNECTOR>_TOKEN}` with `auth: bearer` for an "
    "API): the value is read from the environment or a Prefect Secret block when the connector runs, "
    "and never stored"
)


class ContractPin(BaseModel):
    """The ``contract`` field of a connector registration (checked by ``contracts.pinning``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    major: int = Field(ge=0, description="The contract major version the connector was tested against.")
    accept_major: int | None = Field(
        None, ge=0, description="Another major version the connector may run against (an explicit opt-in)."
    )


class Registration(BaseModel):
    """One connector, as its department declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique connector name: lowercase letters, digits and '-'.")
    department: str = Field(description="The department that owns the system.")
    dataset: str = Field(description="The data contract id the records are validated against.")
    contract: ContractPin | None = Field(
        None, description="The contract major version this connector was tested against: {major: N}."
    )
    type: str = Field(description="The connector type (sql, http, files, or a plugin's).")
    options: dict[str, Any] = Field(default_factory=dict, description="The type's options.")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Secret NAMES by purpose (password, token): environment variables or Prefect Secret "
        "blocks, never values.",
    )
    schedule: str | None = Field(None, description="Cron schedule of the pull (informational).")
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use lowercase letters, digits and '-' (2-63 characters)")
        return v

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        from connectors.secrets import secret_name_problem

        name = info.data.get("name")
        for key, secret in v.items():
            if not _SECRET_NAME_RE.match(secret) or not isinstance(name, str):
                raise ValueError(f"secret {key!r} must name an environment variable or Prefect Secret block")
            problem = secret_name_problem(name, secret)
            if problem:
                raise ValueError(f"secret {key!r}: {problem}")
        return v

    def expanded_options(self, home: Path) -> dict[str, Any]:
        """Options with ``{home}`` replaced in every string value."""
        return _expand(self.options, {"home": str(home)})


def _expand(value: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in variables.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _expand(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, variables) for v in value]
    return value


def load_registration(path: Path) -> Registration:
    from onceonly.yamlfile import MAX_BYTES

    try:
        if path.stat().st_size > MAX_BYTES:  # refused before it is read into memory
            raise ConfigurationError(f"{path}: larger than {MAX_BYTES >> 20} MiB; not a registration")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read registration: {exc}") from exc
    return parse_registration(text, str(path))


def parse_registration(text: str, source: str) -> Registration:
    """The registration in YAML ``text``; ``source`` (a file name) heads every error.

    Checks the common fields and the options against the type's ``options_model``; an unknown
    type fails listing the known ones.
    """
    data, node = read_yaml(text, source)
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{source}: a registration is a YAML mapping")
    try:
        registration = Registration.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: {_problems(exc, node)}") from None
    from connectors.base import connector_types

    types = connector_types()
    if registration.type not in types:
        raise UnknownConnectorType(
            f"{source}: line {_line(node, ('type',))}, type: unknown connector type {registration.type!r}; "
            f"known types: {', '.join(sorted(types))}"
        )
    _refuse_embedded_credentials(registration.options, node, source)
    model = types[registration.type].options_model
    if model is not None:
        try:
            model.model_validate(registration.options)
        except ValidationError as exc:
            raise ConfigurationError(f"{source}: {_problems(exc, node, prefix=('options',))}") from None
    return registration


def _refuse_embedded_credentials(options: Mapping[str, Any], node: yaml.Node | None, source: str) -> None:
    """Refuse a credential written into an option (it would be stored in the catalog in clear).

    The message names the option and what kind of credential it holds, never the value.
    """
    for path, value in _strings(options, ("options",)):
        problem = _credential_in(value)
        if problem:
            raise ConfigurationError(
                f"{source}: line {_line(node, path)}, {'.'.join(map(str, path))}: {problem}; {_SECRETS_HINT}"
            )
    params = options.get("params")
    if isinstance(params, Mapping):
        for key in params:
            if str(key).lower() in _CREDENTIAL_PARAMS:
                path = ("options", "params", str(key))
                raise ConfigurationError(
                    f"{source}: line {_line(node, path)}, options.params.{key}: a credential in the "
                    f"query parameters; {_SECRETS_HINT}"
                )


def _strings(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _credential_in(text: str) -> str | None:
    """What credential ``text`` (a URL or a path with a query) carries, if any."""
    query = ""
    if "://" in text:
        try:
            parts = urlsplit(text)
            password, username = parts.password, parts.username
        except ValueError:
            return None  # not a URL after all
        if password is not None:
            return "the URL carries a password"
        if username is not None and parts.scheme.lower() in ("http", "https"):
            return "the URL carries credentials before its '@'"
        query = parts.query
    elif "?" in text:
        query = text.split("?", 1)[1]
    for name, _ in parse_qsl(query.split("#", 1)[0], keep_blank_values=True):
        if name.lower() in _CREDENTIAL_PARAMS:
            return f"the URL's query string carries a credential ({name}=…)"
    return None


def _problems(exc: ValidationError, node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> str:
    problems = []
    for e in exc.errors():
        loc = (*prefix, *e["loc"])
        field = ".".join(str(p) for p in loc) or "top level"
        problems.append(f"line {_line(node, loc)}, {field}: {e['msg']}")
    return "; ".join(problems)


def _line(node: yaml.Node | None, loc: Sequence[str | int]) -> int:
    """The 1-based line of the deepest part of ``loc`` present in the YAML (its key's line)."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def registration_schema() -> dict[str, Any]:
    """The JSON Schema of a registration file, with each known type's options schema."""
    from connectors.base import connector_types

    schema = Registration.model_json_schema()
    types = connector_types()
    schema["properties"]["type"]["enum"] = sorted(types)
    defs = schema.setdefault("$defs", {})
    branches = []
    for name, cls in sorted(types.items()):
        if cls.options_model is None:
            continue
        options = cls.options_model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(options.pop("$defs", {}))
        title = f"{cls.options_model.__name__}"
        defs[title] = options
        branches.append(
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": {"properties": {"options": {"$ref": f"#/$defs/{title}"}}},
            }
        )
    if branches:
        schema["allOf"] = branches
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "OnceOnly connector registration"
    return schema


def load_registrations(directory: Path) -> dict[str, Registration]:
    """Every ``*.yaml`` registration in ``directory``, by connector name."""
    found: dict[str, Registration] = {}
    for path in sorted(directory.glob("*.yaml")):
        reg = load_registration(path)
        if reg.name in found:
            raise ConfigurationError(f"{path}: connector name {reg.name!r} is registered twice")
        found[reg.name] = reg
    return found


__all__ = [
    "ContractPin",
    "Registration",
    "load_registration",
    "load_registrations",
    "parse_registration",
    "registration_schema",
]

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
    secrets:
      password: GONGAN_DB_PASSWORD  # the NAME of an environment variable / Prefect Secret
    schedule: "0 2 * * *"

``{home}`` in option strings expands to ``ONCEONLY_HOME``. Secret values never appear in a
registration file, only their names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.pinning import ContractPin
from onceonly.errors import ConfigurationError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]{0,127}$")


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    department: str
    dataset: str
    contract: ContractPin | None = None  # the contract major it was tested against
    type: str
    options: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    schedule: str | None = None
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use lowercase letters, digits and '-' (2-63 characters)")
        return v

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key, name in v.items():
            if not _SECRET_NAME_RE.match(name):
                raise ValueError(f"secret {key!r} must name an environment variable or Prefect Secret block")
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
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read registration: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{path}: a registration is a YAML mapping")
    try:
        return Registration.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"{path}: {problems}") from None


def load_registrations(directory: Path) -> dict[str, Registration]:
    """Every ``*.yaml`` registration in ``directory``, by connector name."""
    found: dict[str, Registration] = {}
    for path in sorted(directory.glob("*.yaml")):
        reg = load_registration(path)
        if reg.name in found:
            raise ConfigurationError(f"{path}: connector name {reg.name!r} is registered twice")
        found[reg.name] = reg
    return found


__all__ = ["Registration", "load_registration", "load_registrations"]

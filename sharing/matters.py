"""The matters catalogue (事项目录): matter → required materials → certificate types.

Example::

    catalogue = load_matters(settings.matters_file)
    matter = catalogue.get("hukou-move-after-marriage")
    [m.name for m in matter.materials]          # ["结婚证", "居民户口簿", "居民身份证"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from onceonly.errors import ConfigurationError


class Material(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    certificate_types: tuple[str, ...] = ()
    note: str | None = None


class Matter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name: str
    department: str
    subject: Literal["person", "organisation"]
    materials: tuple[Material, ...]


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    matters: tuple[Matter, ...]

    def get(self, code: str) -> Matter:
        for matter in self.matters:
            if matter.code == code:
                return matter
        known = ", ".join(m.code for m in self.matters)
        raise ConfigurationError(f"no matter {code!r} in the catalogue (known: {known})")


def load_matters(path: Path) -> Catalogue:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Catalogue.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read the matters catalogue: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"{path}: {problems}") from None


__all__ = ["Catalogue", "Material", "Matter", "load_matters"]

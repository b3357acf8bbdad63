"""The matters catalogue (事项目录): matter → required materials → certificate types and holder.

Example::

    catalogue = load_matters(settings.matters_file, known_types=certificate_datasets(contracts_dir))
    matter = catalogue.get("hukou-move-after-marriage")
    [m.name for m in matter.materials]          # ["结婚证", "居民户口簿", "配偶居民户口簿", "居民身份证"]
    asked = catalogue.asked("marriage-household")  # a 一件事 bundle: the union of its matters

A material lists the e-certificate types (证照类型代码) that satisfy it and whose certificate it
is (``holder``): the applicant's own, or a relative's — the spouse, a child, a parent — or, for
an enterprise, its legal representative's. A certificate satisfies the material when it is
of a listed type, held by that person, 有效 in the signed status list and in force on the day
(``sharing.skipcheck``). A material with no type listed cannot be skipped yet: no department
shares it; its ``note`` says what the counter checks instead. A material with types may have a
note too: what to bring when no certificate satisfies it (said with the answer's reason).

A material may also be satisfied by a material of the same person handed in before
(历史材料免交): ``reused`` lists the kinds of the district's materials library
(``reused_materials``: the certificate type its materials are issued as, and each kind's code and
name) that stand in for it while valid — the kind read from the certificate as the log commits to
it. A 一件事 bundle (``bundles``) asks for the materials of all its matters, each material (name
and holder) once. The catalogue is validated like a contract: an unknown key, relation, matter,
certificate type or material kind is an error naming the file and the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.model import yaml_line
from onceonly.errors import ConfigurationError
from onceonly.privacy import mask_typed

Relation = Literal["applicant", "spouse", "child", "parent", "legal_representative"]
RELATIONS: tuple[str, ...] = Relation.__args__  # type: ignore[attr-defined]
RELATION_NAMES = {
    "applicant": "申请人本人",
    "spouse": "配偶",
    "child": "子女",
    "parent": "父母",
    "legal_representative": "法定代表人",
}
_CODE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # a matter's or bundle's code (and a kind's)
_PERSON_RELATIONS = {"applicant", "spouse", "child", "parent"}
_ORGANISATION_RELATIONS = {"applicant", "legal_representative"}


class Material(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    certificate_types: tuple[str, ...] = ()
    holder: Relation = "applicant"
    note: str | None = None
    reused: tuple[str, ...] = ()  # kinds of reused_materials that stand in for it while valid


class ReusedMaterials(BaseModel):
    """The materials library (历史材料免交): the certificate type each material handed in before
    is issued as, and the kinds it keeps (code → name, the ``material_code`` of its records)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    certificate_type: str = Field(min_length=1)
    kinds: dict[str, str] = Field(min_length=1)


class Matter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    department: str
    subject: Literal["person", "organisation"]
    materials: tuple[Material, ...] = Field(min_length=1)


class Bundle(BaseModel):
    """A 一件事 bundle: several matters served together."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    matters: tuple[str, ...] = Field(min_length=2)


@dataclass(frozen=True)
class Asked:
    """What a matter or a bundle asks for: each material once, with the matters that need it."""

    code: str
    name: str
    subject: Literal["person", "organisation"]
    materials: tuple[Material, ...]
    needed_by: tuple[tuple[str, ...], ...]  # per material, the codes of the matters asking for it
    bundle: bool
    reused: ReusedMaterials | None = None  # the catalogue's materials library, if any


class RelativeRule(BaseModel):
    """How a relative is found from shared data: in a certificate of one of ``types`` the
    applicant holds (in force, as the log commits to it), the person the certificate names in
    one of ``fields`` — or, with no fields, the other holder of the same record (the spouse on a
    结婚证). Written as a list of types when there are no fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    types: tuple[str, ...] = Field(min_length=1)
    fields: tuple[str, ...] = ()


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    matters: tuple[Matter, ...]
    bundles: tuple[Bundle, ...] = ()
    # How each relative is found (relation -> rule): the spouse through the 结婚证, a child or a
    # parent through the 出生医学证明 (the fields naming them).
    relatives: dict[Relation, RelativeRule] = {}
    # 历史材料免交: the materials library whose materials a material's ``reused`` kinds name.
    reused_materials: ReusedMaterials | None = None

    @field_validator("relatives", mode="before")
    @classmethod
    def _types_alone(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"types": v} if isinstance(v, list | tuple) else v for k, v in value.items()}
        return value

    def get(self, code: str) -> Matter:
        for matter in self.matters:
            if matter.code == code:
                return matter
        known = ", ".join(m.code for m in self.matters)
        raise ConfigurationError(f"no matter {code!r} in the catalogue (known: {known})")

    def bundle(self, code: str) -> Bundle:
        for bundle in self.bundles:
            if bundle.code == code:
                return bundle
        known = ", ".join(b.code for b in self.bundles) or "none"
        raise ConfigurationError(f"no 一件事 bundle {code!r} in the catalogue (known: {known})")

    def asked(self, code: str) -> Asked:
        """The materials a matter or a bundle (by code) asks for; a bundle's each once."""
        if any(b.code == code for b in self.bundles):
            bundle = self.bundle(code)
            matters = [self.get(m) for m in bundle.matters]
            name, is_bundle = bundle.name, True
        elif any(m.code == code for m in self.matters):
            matters, name, is_bundle = [self.get(code)], self.get(code).name, False
        else:
            known = ", ".join([*(m.code for m in self.matters), *(b.code for b in self.bundles)])
            shown = repr(code) if _CODE_RE.fullmatch(code) else f"'{mask_typed(code)}'"  # an ID typed here
            raise ConfigurationError(f"no matter or 一件事 bundle {shown} in the catalogue (known: {known})")
        order: dict[tuple[str, str], Material] = {}
        needed: dict[tuple[str, str], list[str]] = {}
        for matter in matters:
            for material in matter.materials:
                # The same certificate of the same person is one material, whatever each
                # matter calls it (结婚证, 父母结婚证); an unshared one is known by its name.
                key = (",".join(material.certificate_types) or material.name, material.holder)
                first = order.setdefault(key, material)
                more = tuple(k for k in material.reused if k not in first.reused)
                if more:  # the kinds any of the matters accepts for it
                    order[key] = first.model_copy(update={"reused": (*first.reused, *more)})
                needed.setdefault(key, []).append(matter.code)
        return Asked(
            code,
            name,
            matters[0].subject,
            tuple(order.values()),
            tuple(tuple(v) for v in needed.values()),
            is_bundle,
            self.reused_materials,
        )


def load_matters(path: Path, *, known_types: Mapping[str, Any] | None = None) -> Catalogue:
    """Load and validate the catalogue; errors name the file and the line.

    With ``known_types`` (certificate type code → the dataset issuing it:
    ``contracts.model.certificate_datasets``), a material naming any other type is an error.
    """
    from onceonly.yamlfile import YamlProblem, read_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read the matters catalogue: {exc}") from exc
    try:
        data, node = read_yaml(text, str(path))
    except YamlProblem as exc:
        where = f"{path}: line {exc.line}" if exc.line else str(path)
        raise ConfigurationError(f"{where}: cannot read the matters catalogue: {exc.problem}") from None
    try:
        catalogue = Catalogue.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        locs = [tuple(e["loc"]) for e in errors]
        # An invalid element also makes its list "too short": report the element only.
        errors = [
            e
            for e in errors
            if not any(o[: len(e["loc"])] == tuple(e["loc"]) and o != tuple(e["loc"]) for o in locs)
        ]
        for e in errors[:20]:
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
            line = yaml_line(node, loc)
            where = f"{path}:{line}" if line else str(path)
            problems.append(f"{where}: {'.'.join(map(str, loc)) or 'the catalogue'}: {e['msg']}")
        raise ConfigurationError("\n".join(problems)) from None
    problems = [
        f"{path}:{yaml_line(node, loc) or '?'}: {message}"
        for loc, message in _inconsistencies(catalogue, known_types)
    ]
    if problems:
        raise ConfigurationError("\n".join(problems))
    return catalogue


def _inconsistencies(
    catalogue: Catalogue, known_types: Mapping[str, Any] | None
) -> list[tuple[tuple[Any, ...], str]]:
    found: list[tuple[tuple[Any, ...], str]] = []
    codes: dict[str, int] = {}
    library = catalogue.reused_materials
    kinds = library.kinds if library is not None else {}
    if library is not None:
        if known_types is not None and library.certificate_type not in known_types:
            found.append(
                (
                    ("reused_materials", "certificate_type"),
                    f"reused_materials: unknown certificate type {library.certificate_type!r} (no data "
                    f"contract issues it; known: {', '.join(sorted(known_types)) or 'none'})",
                )
            )
        for kind in kinds:
            if not _CODE_RE.fullmatch(kind):
                found.append(
                    (
                        ("reused_materials", "kinds", kind),
                        f"reused_materials: kind code {kind!r} is not lower-case letters, digits and '-'",
                    )
                )
    for i, matter in enumerate(catalogue.matters):
        if matter.code in codes:
            found.append((("matters", i, "code"), f"matter {matter.code!r} is defined twice"))
        codes[matter.code] = i
        allowed = _PERSON_RELATIONS if matter.subject == "person" else _ORGANISATION_RELATIONS
        for j, material in enumerate(matter.materials):
            loc = ("matters", i, "materials", j)
            if material.holder not in allowed:
                found.append(
                    (
                        (*loc, "holder"),
                        f"matter {matter.code!r}: holder {material.holder!r} is not a relation of "
                        f"an applicant that is a {matter.subject} (one of: {', '.join(sorted(allowed))})",
                    )
                )
            for k, kind in enumerate(material.reused):
                if kind not in kinds:
                    listed = ", ".join(kinds) if kinds else "none: the catalogue has no reused_materials"
                    found.append(
                        (
                            (*loc, "reused", k),
                            f"matter {matter.code!r}, material {material.name}: unknown reused material "
                            f"kind {kind!r} (known: {listed})",
                        )
                    )
            for k, type_code in enumerate(material.certificate_types):
                if known_types is not None and type_code not in known_types:
                    found.append(
                        (
                            (*loc, "certificate_types", k),
                            f"matter {matter.code!r}, material {material.name}: unknown certificate "
                            f"type {type_code!r} (no data contract issues it; known: "
                            f"{', '.join(sorted(known_types)) or 'none'})",
                        )
                    )
    for relation, rule in catalogue.relatives.items():
        if relation not in ("spouse", "child", "parent"):
            found.append(
                (
                    ("relatives", relation),
                    f"relatives: a {relation!r} is not found through shared data (spouse, child, parent are)",
                )
            )
        elif relation == "spouse" and rule.fields:
            found.append(
                (
                    ("relatives", relation),
                    "relatives.spouse: a spouse is the other holder of the record, named by no field "
                    "(list the types only)",
                )
            )
        elif relation != "spouse" and not rule.fields:
            found.append(
                (
                    ("relatives", relation),
                    f"relatives.{relation}: name the fields of the certificate that give the "
                    f"{RELATION_NAMES[relation]} (fields: [...]); only a spouse is the other holder "
                    "of a record",
                )
            )
        for k, type_code in enumerate(rule.types):
            if known_types is not None and type_code not in known_types:
                found.append(
                    (
                        ("relatives", relation, "types", k) if rule.fields else ("relatives", relation, k),
                        f"relatives.{relation}: unknown certificate type {type_code!r}",
                    )
                )
    for i, bundle in enumerate(catalogue.bundles):
        if bundle.code in codes:
            found.append((("bundles", i, "code"), f"bundle {bundle.code!r} has the code of a matter"))
        subjects = set()
        for j, code in enumerate(bundle.matters):
            if code not in codes:
                found.append(
                    (("bundles", i, "matters", j), f"bundle {bundle.code!r}: unknown matter {code!r}")
                )
            else:
                subjects.add(catalogue.matters[codes[code]].subject)
        if len(subjects) > 1:
            found.append(
                (("bundles", i), f"bundle {bundle.code!r} mixes matters of persons and of organisations")
            )
    return found


__all__ = [
    "RELATIONS",
    "RELATION_NAMES",
    "Asked",
    "Bundle",
    "Catalogue",
    "Material",
    "Matter",
    "RelativeRule",
    "ReusedMaterials",
    "load_matters",
]

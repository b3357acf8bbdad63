"""Generate the demo department systems under one folder, and the manifest that describes them.

Example::

    manifest = generate_all(Path("var/departments"), rows=5000, seed=20261121)
    manifest.datasets["household"].bad_rows[0]
    # BadRow(kind='missing_required', key='120114200310205034', column='name')
    manifest = add_updates(Path("var/departments"), rows=200, seed=1)   # the next day's changes

Layout under ``root``::

    gongan/household.db          公安 户籍, table household_member (or the URL given)
    scjg/licences.db             市场监管 营业执照, table business_licence (served by LicenceApi)
    minzheng/drop/*.csv          民政 婚姻登记, one GBK CSV per day
    weijian/births.db            卫健 出生医学证明, table birth_certificate
    budongchan/property.db       不动产登记 不动产权证书, table property_right
    renshe/export/*.csv          人社 社会保险参保, the day's full export (replaced daily)
    shenpi/approvals.db          行政审批 食品经营许可 decisions, table food_permit_decision
    zhengwu/materials.db         政务服务 电子材料库 (materials handed in before), table submitted_material
    manifest.json                rows, deliberately bad rows and batches of each dataset

Everything is a function of ``seed`` and ``rows`` (NumPy generators, timestamps counted from
``BASE_TIME``), so two runs give identical data. The API token is never written down: the
manifest names the environment variable, and :func:`demo_token` derives the demo's value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import make_url

from departments.approvals import DEFAULT_APPROVAL_PATH, add_approvals, write_approvals
from departments.births import DEFAULT_BIRTH_PATH, birth_rows, create_birth_db, insert_birth_rows
from departments.household import (
    DEFAULT_HOUSEHOLD_PATH,
    Registry,
    create_household_table,
    default_household_url,
    household_change_days,
    household_engine,
    household_rows,
    insert_household_rows,
    read_registry,
    registry_update,
)
from departments.insurance import (
    DEFAULT_INSURANCE_DIR,
    INSURANCE_FILE,
    insurance_rows,
    write_insurance_export,
)
from departments.licences import (
    DEFAULT_LICENCE_PATH,
    change_licences,
    create_licence_db,
    eligible_representatives,
    in_business,
    insert_licence_rows,
    licence_rows,
    read_usccs,
)
from departments.marriages import (
    DEFAULT_DROP_DIR,
    index_marriages,
    marriage_rows,
    pair_registry_people,
    registry_singles,
    write_marriage_csv,
)
from departments.materials import DEFAULT_MATERIAL_PATH, add_materials, write_materials
from departments.population import (
    BASE_DATE,
    BASE_TIME,
    BadRow,
    People,
    RowBatch,
    age_on,
    bad_rows_per_kind,
    day,
    synthesize_population,
    townships,
)
from departments.properties import (
    DEFAULT_PROPERTY_PATH,
    create_property_db,
    insert_property_rows,
    property_rows,
)

MANIFEST_NAME = "manifest.json"
API_TOKEN_ENV = "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN"
DEFAULT_ROWS = 5000
DEFAULT_SEED = 20261121
MANIFEST_FORMAT = 1
HOUSEHOLD, LICENCES, MARRIAGES, BIRTHS = "household", "licences", "marriages", "births"
PROPERTIES, INSURANCE, APPROVALS = "properties", "insurance", "approvals"
MATERIALS = "materials"
DATASETS = (HOUSEHOLD, LICENCES, MARRIAGES, BIRTHS, PROPERTIES, INSURANCE, APPROVALS, MATERIALS)
# The registers not simulated day to day: add_updates writes nothing to them.
STATIC = (BIRTHS, PROPERTIES, INSURANCE)


def demo_token(seed: int) -> str:
    """The demo API's bearer token for ``seed`` (deterministic; a demo value, not a secret)."""
    return "demo-" + hashlib.sha256(f"onceonly-demo-scjg:{seed}".encode()).hexdigest()[:32]


@dataclass
class DatasetManifest:
    """What one department system holds: row count, deliberately bad rows, high watermark."""

    rows: int
    key: str
    location: str  # relative to the root, or a database URL with the password masked
    bad_rows: list[BadRow] = field(default_factory=list)
    watermark: str | None = None
    api_token_env: str | None = None

    def bad_keys(self, kind: str | None = None) -> set[str]:
        return {b.key for b in self.bad_rows if kind is None or b.kind == kind}


@dataclass
class Batch:
    """One generation step: batch 0 is the history, batch k the changes of day ``day``."""

    number: int
    seed: int
    rows: int
    day: str
    written: dict[str, int]
    watermarks: dict[str, str | None]
    changed: dict[str, list[str]] = field(default_factory=dict)
    file: str | None = None  # the marriage CSV of this batch


@dataclass
class Manifest:
    seed: int
    rows: int
    datasets: dict[str, DatasetManifest]
    batches: list[Batch] = field(default_factory=list)
    base_time: str = BASE_TIME.replace(tzinfo=dt.timezone(dt.timedelta(hours=8))).isoformat()
    household_url: str | None = None  # None: the SQLite file under the root
    format: int = MANIFEST_FORMAT

    @staticmethod
    def path(root: Path) -> Path:
        return Path(root) / MANIFEST_NAME

    @classmethod
    def load(cls, root: Path) -> Manifest:
        return cls.from_dict(json.loads(cls.path(root).read_text(encoding="utf-8")))

    def save(self, root: Path) -> Path:
        path = self.path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        part.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        part.replace(path)
        return path

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name, ds in self.datasets.items():
            data["datasets"][name]["bad_rows"] = [b.to_dict() for b in ds.bad_rows]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        datasets = {
            name: DatasetManifest(**{**ds, "bad_rows": [BadRow.from_dict(b) for b in ds["bad_rows"]]})
            for name, ds in data["datasets"].items()
        }
        batches = [Batch(**b) for b in data.get("batches", [])]
        rest = {k: v for k, v in data.items() if k not in ("datasets", "batches")}
        return cls(datasets=datasets, batches=batches, **rest)


def _masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _rngs(entropy: int | list[int]) -> list[np.random.Generator]:
    # Spawned children are indexed: a new department's generator (the births fifth, the property
    # register sixth, the insured persons seventh, the permit decisions eighth) leaves the
    # earlier ones as they were.
    return [np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(8)]


def _iso_naive(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


# Below this many rows a second process costs more than it saves.
PARALLEL_FROM_ROWS = 200_000


@dataclass
class _LicenceSummary:
    rows: int
    bad_rows: list[BadRow]
    watermark: str | None


def _write_licences(path: Path, rows: int, rng: np.random.Generator, reps: People) -> _LicenceSummary:
    create_licence_db(path, replace=True)
    batch = licence_rows(rng, rows, reps, set())
    insert_licence_rows(path, batch.rows)
    return _LicenceSummary(len(batch.rows), batch.bad_rows, batch.watermark)


def _beside(rows: int, job: Callable[..., _LicenceSummary], *args: Any) -> Callable[[], _LicenceSummary]:
    """Start ``job(*args)`` in a spawned process when ``rows`` is large; call the result to wait.

    The job gets its own generator, so the data are the same whether it ran beside or inline
    (it also runs inline if the process cannot be started).
    """
    if rows < PARALLEL_FROM_ROWS:
        done = job(*args)
        return lambda: done
    try:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        future = pool.submit(job, *args)
    except (OSError, RuntimeError):
        done = job(*args)
        return lambda: done

    def wait() -> _LicenceSummary:
        try:
            return future.result()
        except BrokenProcessPool:
            return job(*args)
        finally:
            pool.shutdown()

    return wait


def generate_all(
    root: Path, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, household_url: str | None = None
) -> Manifest:
    """Create the department systems under ``root`` with ``rows`` rows each (the births, the
    property register and the insured persons: drawn from the registry's people, so as many as
    they give), replacing any earlier demo data, and write ``root/manifest.json``."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    root = Path(root)
    for sub in {
        p.parts[0]
        for p in (
            DEFAULT_HOUSEHOLD_PATH,
            DEFAULT_LICENCE_PATH,
            DEFAULT_DROP_DIR,
            DEFAULT_BIRTH_PATH,
            DEFAULT_PROPERTY_PATH,
            DEFAULT_INSURANCE_DIR,
            DEFAULT_APPROVAL_PATH,
            DEFAULT_MATERIAL_PATH,
        )
    }:
        shutil.rmtree(root / sub, ignore_errors=True)
    Manifest.path(root).unlink(missing_ok=True)
    rng_pop, rng_h, rng_l, rng_m, rng_b, rng_p, rng_i, rng_a = _rngs(seed)
    taken: set[str] = set()
    yesterday = BASE_DATE - dt.timedelta(days=1)

    people = synthesize_population(rng_pop, rows - bad_rows_per_kind(rows), taken=taken)
    changes, together = household_change_days(rng_h, people, yesterday)
    household = household_rows(rng_h, people, changes, together, rows=rows, first_id=1)
    # The licence register needs only the representatives: write it on the second core.
    licence_path = root / DEFAULT_LICENCE_PATH
    reps = eligible_representatives(people, household.spoilt)
    licences_done = _beside(rows, _write_licences, licence_path, rows, rng_l, reps)
    engine = household_engine(household_url or default_household_url(root))
    try:
        create_household_table(engine, replace=True)
        insert_household_rows(engine, household.rows)
    finally:
        engine.dispose()

    ok = np.ones(len(people), dtype=bool)
    ok[list(household.spoilt)] = False
    couples = people.couples[ok[people.couples[:, 0]] & ok[people.couples[:, 1]]]
    unpaired = ok.copy()
    unpaired[people.couples.ravel()] = False
    # Most single adults married someone whose 户籍 is not in this registry.
    singles = registry_singles(rng_m, people, unpaired, BASE_DATE, share=0.6)
    marriages = marriage_rows(rng_m, rows, people, couples, singles, taken)
    marriage_file = write_marriage_csv(root / DEFAULT_DROP_DIR, BASE_DATE, marriages.rows)
    births = birth_rows(rng_b, people, ok)
    create_birth_db(root / DEFAULT_BIRTH_PATH, replace=True)
    insert_birth_rows(root / DEFAULT_BIRTH_PATH, births.rows)
    properties = property_rows(rng_p, people, ok, _married_on(marriages.rows))
    create_property_db(root / DEFAULT_PROPERTY_PATH, replace=True)
    insert_property_rows(root / DEFAULT_PROPERTY_PATH, properties.rows)
    licences = licences_done()
    # The insured employees work for businesses of the licence register that are in business.
    employers = in_business(licence_path, {b.key for b in licences.bad_rows})
    insurance = insurance_rows(rng_i, people, ok, employers)
    write_insurance_export(root / DEFAULT_INSURANCE_DIR, insurance.rows)
    # 行政审批局's 食品经营许可 decisions: the food businesses of the licence register.
    approvals = write_approvals(root, rng_a, licence_path, {b.key for b in licences.bad_rows})
    materials = write_materials(root, _materials_rng(seed), people, ok)  # 政务服务 电子材料库

    watermarks = {
        HOUSEHOLD: _iso_naive(household.watermark),
        LICENCES: licences.watermark,
        MARRIAGES: max((r[8] for r in marriages.rows), default=None),
        BIRTHS: births.watermark,
        PROPERTIES: properties.watermark,
        INSURANCE: insurance.watermark,
        APPROVALS: approvals.watermark,
    }
    manifest = Manifest(
        seed=seed,
        rows=rows,
        household_url=_masked(household_url) if household_url else None,
        datasets={
            HOUSEHOLD: DatasetManifest(
                len(household.rows),
                "person_id",
                _masked(household_url) if household_url else DEFAULT_HOUSEHOLD_PATH.as_posix(),
                household.bad_rows,
                watermarks[HOUSEHOLD],
            ),
            LICENCES: DatasetManifest(
                licences.rows,
                "uscc",
                DEFAULT_LICENCE_PATH.as_posix(),
                licences.bad_rows,
                watermarks[LICENCES],
                api_token_env=API_TOKEN_ENV,
            ),
            MARRIAGES: DatasetManifest(
                len(marriages.rows),
                "登记证字号",
                DEFAULT_DROP_DIR.as_posix(),
                marriages.bad_rows,
                watermarks[MARRIAGES],
            ),
            BIRTHS: DatasetManifest(
                len(births.rows),
                "cert_no",
                DEFAULT_BIRTH_PATH.as_posix(),
                births.bad_rows,
                watermarks[BIRTHS],
            ),
            PROPERTIES: DatasetManifest(
                len(properties.rows),
                "cert_no",
                DEFAULT_PROPERTY_PATH.as_posix(),
                properties.bad_rows,
                watermarks[PROPERTIES],
            ),
            INSURANCE: DatasetManifest(
                len(insurance.rows),
                "参保证明编号",
                (DEFAULT_INSURANCE_DIR / INSURANCE_FILE).as_posix(),
                insurance.bad_rows,
                watermarks[INSURANCE],
            ),
            APPROVALS: DatasetManifest(
                len(approvals.rows),
                "approval_id",
                DEFAULT_APPROVAL_PATH.as_posix(),
                approvals.bad_rows,
                watermarks[APPROVALS],
            ),
        },
        batches=[
            Batch(
                number=0,
                seed=seed,
                rows=rows,
                day=yesterday.isoformat(),
                written={
                    HOUSEHOLD: len(household.rows),
                    LICENCES: licences.rows,
                    MARRIAGES: len(marriages.rows),
                    BIRTHS: len(births.rows),
                    PROPERTIES: len(properties.rows),
                    INSURANCE: len(insurance.rows),
                    APPROVALS: len(approvals.rows),
                },
                watermarks=watermarks,
                file=marriage_file.name,
            )
        ],
    )
    _with_materials(manifest, materials)
    manifest.save(root)
    return manifest


def _materials_rng(entropy: int | list[int]) -> np.random.Generator:
    # The 电子材料库's generator: a ninth spawned child, the eight of _rngs left as they were.
    return np.random.default_rng(np.random.SeedSequence(entropy).spawn(9)[8])


def _with_materials(manifest: Manifest, materials: RowBatch) -> None:
    """The 电子材料库's rows of the manifest's newest batch (the history, or a day's) recorded."""
    ds = manifest.datasets.setdefault(
        MATERIALS, DatasetManifest(0, "material_id", DEFAULT_MATERIAL_PATH.as_posix())
    )
    ds.rows += len(materials.rows)
    ds.bad_rows.extend(materials.bad_rows)
    ds.watermark = max(filter(None, [ds.watermark, materials.watermark]), default=None)
    manifest.batches[-1].written[MATERIALS] = len(materials.rows)
    manifest.batches[-1].watermarks[MATERIALS] = materials.watermark


def _married_on(rows: list[tuple[Any, ...]]) -> dict[str, dt.date]:
    """Each spouse's 登记日期 in the marriage register's rows (those with a readable date)."""
    found: dict[str, dt.date] = {}
    for row in rows:
        try:
            on = dt.date.fromisoformat(str(row[8]))
        except ValueError:
            continue
        for person in (row[3], row[6]):
            if person:
                found[str(person)] = max(on, found.get(str(person), on))
    return found


def _sources_exist(root: Path, manifest: Manifest) -> bool:
    files = [
        root / DEFAULT_LICENCE_PATH,
        root / DEFAULT_BIRTH_PATH,
        root / DEFAULT_PROPERTY_PATH,
        root / DEFAULT_INSURANCE_DIR / INSURANCE_FILE,
        root / DEFAULT_APPROVAL_PATH,
        root / DEFAULT_MATERIAL_PATH,
    ] + [root / DEFAULT_DROP_DIR / b.file for b in manifest.batches if b.file]
    if manifest.household_url is None:
        files.append(root / DEFAULT_HOUSEHOLD_PATH)
    return all(f.exists() for f in files)


def generate_if_missing(
    root: Path, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, household_url: str | None = None
) -> tuple[Manifest, bool]:
    """The stored manifest and False when ``root`` already holds this seed and size; else
    :func:`generate_all` and True."""
    root = Path(root)
    try:
        manifest = Manifest.load(root)
    except (OSError, ValueError, KeyError, TypeError):
        manifest = None
    if (
        manifest is not None
        and manifest.seed == seed
        and manifest.rows == rows
        and manifest.household_url == (_masked(household_url) if household_url else None)
        and _sources_exist(root, manifest)
    ):
        return manifest, False
    return generate_all(root, rows, seed, household_url), True


def _registry_people(registry: Registry, usable: np.ndarray) -> tuple[People, list[str]]:
    index = {t.code: i for i, t in enumerate(townships())}
    keep = np.flatnonzero(usable)
    people = People(
        person_id=[registry.person_id[i] for i in keep],
        name=[str(registry.name[i]) for i in keep],
        male=registry.male[keep],
        birth=registry.birth[keep],
        township=np.array([index[registry.township_code[i]] for i in keep], dtype=np.int64),
    )
    return people, [registry.household_no[i] for i in keep]


def add_updates(root: Path, rows: int, seed: int, household_url: str | None = None) -> Manifest:
    """Append the next day's changes to each source, as the departments would between two daily
    runs, and record them as a new batch in the manifest.

    Household: new rows (newcomers, newborns, and 分户 rows of existing people) with larger ids
    and later ``updated_at``. Licences: new registrations plus about 5 % in-place changes of
    existing ones, all with later ``updated_at``. Marriages: a new CSV in the drop folder.
    Approvals: a 食品经营许可 decision for each new food business of the day. Materials: those
    handed in that day at the 政务服务 counters (about 0.4 % of the residents). Births,
    properties and insured persons: none (those registers' day-to-day changes are not simulated).
    ``household_url`` is needed only when the registry's URL carries a password.
    """
    root = Path(root)
    manifest = Manifest.load(root)
    number = len(manifest.batches)
    on = BASE_DATE + dt.timedelta(days=number - 1)
    rng_h, rng_l, rng_m, *_, rng_a = _rngs([seed, number])
    url = household_url or manifest.household_url or default_household_url(root)
    if "***" in url:
        raise ValueError("the household registry URL has a password: pass household_url")
    per = bad_rows_per_kind(rows)

    # What the sources hold now: used ID bodies, the registry's latest rows, existing marriages.
    engine = household_engine(url)
    try:
        registry = read_registry(engine)
        dropped = index_marriages(root / DEFAULT_DROP_DIR)
        married = dropped.spouses
        taken = {pid[:17] for pid in registry.person_id if pid} | {pid[:17] for pid in married}
        bad_people = manifest.datasets[HOUSEHOLD].bad_keys()
        update = registry_update(rng_h, registry, rows - per, bad_people, taken, on)
        household = household_rows(
            rng_h, update.people, update.change_days, update.groups, rows=rows, first_id=registry.max_id + 1
        )
        insert_household_rows(engine, household.rows)
    finally:
        engine.dispose()

    valid_town = {t.code for t in townships()}
    usable = np.array(
        [pid not in bad_people and pid not in update.changed and nm is not None and code in valid_town
         for pid, nm, code in zip(registry.person_id, registry.name, registry.township_code, strict=True)],
        dtype=bool,
    )  # fmt: skip
    people, households = _registry_people(registry, usable)

    licence_path = root / DEFAULT_LICENCE_PATH
    existing_usccs = {u[:17] for u in read_usccs(licence_path) if u}
    changed_usccs = change_licences(
        rng_l, licence_path, round(rows * 0.05), manifest.datasets[LICENCES].bad_keys(), on
    )
    adults = np.flatnonzero(age_on(people.birth, day(on)) >= 19)
    reps = People(
        [people.person_id[i] for i in adults], [people.name[i] for i in adults],
        people.male[adults], people.birth[adults], people.township[adults],
    )  # fmt: skip
    licences = licence_rows(rng_l, rows, reps, existing_usccs, on=on)
    insert_licence_rows(licence_path, licences.rows)
    approvals = add_approvals(root, rng_a, licences.rows, on)  # the new food businesses' permits

    unmarried = np.array([pid not in married for pid in people.person_id], dtype=bool)
    pool = registry_singles(rng_m, people, unmarried, on, share=1.0)
    n = rows - per
    couples = pair_registry_people(rng_m, people, pool, households, limit=round(n * 0.35))
    rest = np.setdiff1d(pool, couples.ravel())
    singles = np.sort(rng_m.permutation(rest)[: round(n * 0.35)])
    marriages = marriage_rows(rng_m, rows, people, couples, singles, taken, on=on, serials=dropped.serials)
    marriage_file = write_marriage_csv(root / DEFAULT_DROP_DIR, on + dt.timedelta(days=1), marriages.rows)

    watermarks = {
        HOUSEHOLD: _iso_naive(household.watermark),
        LICENCES: licences.watermark,
        MARRIAGES: max((r[8] for r in marriages.rows), default=None),
        APPROVALS: approvals.watermark,
    }
    written = {
        HOUSEHOLD: len(household.rows),
        LICENCES: len(licences.rows),
        MARRIAGES: len(marriages.rows),
        APPROVALS: len(approvals.rows),
        **dict.fromkeys(STATIC, 0),
    }
    watermarks.update(dict.fromkeys(STATIC))
    updated = ((HOUSEHOLD, household), (LICENCES, licences), (MARRIAGES, marriages), (APPROVALS, approvals))
    for name, batch in updated:
        ds = manifest.datasets[name]
        ds.rows += written[name]
        ds.bad_rows.extend(batch.bad_rows)
        ds.watermark = max(filter(None, [ds.watermark, watermarks[name]]), default=None)
    manifest.batches.append(
        Batch(
            number=number, seed=seed, rows=rows, day=on.isoformat(), written=written, watermarks=watermarks,
            changed={HOUSEHOLD: sorted(update.changed), LICENCES: changed_usccs}, file=marriage_file.name,
        )
    )  # fmt: skip
    _with_materials(manifest, add_materials(root, _materials_rng([seed, number]), people, on))
    manifest.save(root)
    return manifest


__all__ = [
    "API_TOKEN_ENV",
    "DATASETS",
    "DEFAULT_ROWS",
    "DEFAULT_SEED",
    "MANIFEST_NAME",
    "Batch",
    "DatasetManifest",
    "Manifest",
    "add_updates",
    "demo_token",
    "generate_all",
    "generate_if_missing",
]

"""Wiring: the stage objects one run needs, built once from the settings.

Example::

    pipeline = Pipeline.open(Settings())
    pipeline.compiled("household")          # CompiledContract
    pipeline.connector("gongan-household")  # a ready connector

No business logic lives here; it only connects the stages.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from catalog import Catalog
from connectors import (
    ChainedSecrets,
    Connector,
    EnvironmentSecrets,
    PrefectSecrets,
    Registration,
    create_connector,
)
from connectors.paths import SourcePaths
from connectors.registry import register_directory, registered
from contracts.checks import CheckContext, load_region_codes
from contracts.compiler import CompiledContract, compile_contract
from contracts.datadocs import DataDocs
from contracts.model import Contract, contract_by_id, load_contract
from evidence.keys import KEYRING_FILE, SigningKey, open_key_store
from evidence.log import TransparencyLog
from evidence.merkle import tree_hash
from flows.redaction import remember_secrets
from flows.run_log import one_line
from lake.parquet import ParquetLake
from onceonly.errors import ConfigurationError, ContractError
from onceonly.settings import Settings


@dataclass
class Pipeline:
    settings: Settings
    catalog: Catalog
    lake: ParquetLake
    key: SigningKey
    log: TransparencyLog
    key_created: bool
    #: Names the shipped registration files added to the catalog on open (their blocks are
    #: saved by the flow, which has a Prefect API at hand).
    newly_registered: list[str]
    _data_docs: DataDocs | None = None

    @classmethod
    def open(cls, settings: Settings) -> Pipeline:
        key, created = signing_key(settings)
        catalog = Catalog.connect(settings.catalog_url)
        # The connectors registered in the catalog; the shipped files (the demo's) are
        # registered the first time this catalog sees their names.
        added = register_directory(catalog, settings.registrations_dir)
        return cls(
            settings=settings,
            catalog=catalog,
            lake=ParquetLake.of(settings),
            key=key,
            log=TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash)),
            key_created=created,
            newly_registered=added,
        )

    @property
    def registrations(self) -> dict[str, Registration]:
        """The connectors registered in the catalog now (a registration may come at any time)."""
        return registered(self.catalog)

    def registration(self, name: str) -> Registration:
        if name not in self.registrations:
            known = ", ".join(sorted(self.registrations)) or "none"
            raise ConfigurationError(f"no connector named {name!r} is registered (known: {known})")
        return self.registrations[name]

    def connector(self, name: str) -> Connector:
        return make_connector(self.settings, self.registration(name))

    def secret_values(self) -> set[str]:
        """Values no message to Prefect may carry: the key passphrase, the database password and
        the environment values of the secrets the registrations name (a Prefect Secret block's
        value is added when a connector resolves it: ``_Remembered``)."""
        settings = self.settings
        values = {settings.key_passphrase.get_secret_value()} if settings.key_passphrase else set()
        if settings.database_url:
            from sqlalchemy import make_url

            with contextlib.suppress(Exception):  # a URL that does not parse fails where it is used
                values.add(make_url(settings.database_url).password or "")
        environment = EnvironmentSecrets()
        for registration in self.registrations.values():
            for name in registration.secrets.values():
                with contextlib.suppress(ConfigurationError):  # not set (or refused): nothing to hide
                    values.add(environment.resolve(name, connector=registration.name))
        return values - {""}

    def compiled(self, dataset: str) -> CompiledContract:
        """The dataset's contract, compiled. A contract that does not load or compile fails its
        own dataset, in one line naming the file and the cause; the other datasets go on."""
        return compiled_contract(self.settings, dataset)

    def data_docs(self) -> DataDocs:
        if self._data_docs is None:
            self._data_docs = DataDocs(
                self.settings.datadocs_dir,
                base_url=self.settings.datadocs_url,
                retention_days=self.settings.datadocs_retention_days,
            )
        return self._data_docs

    def check_context(self, today: dt.date | None = None) -> CheckContext:
        return check_context(self.settings, today)


def make_connector(settings: Settings, registration: Registration) -> Connector:
    """A ready connector; the secrets it resolves are remembered as values to scrub."""
    secrets = _Remembered(ChainedSecrets(EnvironmentSecrets(), PrefectSecrets()))
    return create_connector(
        registration, settings.home, secrets, paths=SourcePaths.of(settings), limits=settings.limits
    )


def compiled_contract(settings: Settings, dataset: str) -> CompiledContract:
    """The dataset's contract, compiled. A contract that does not load or compile fails its
    own dataset, in one line naming the file and the cause; the other datasets go on."""
    contract = contract_for(settings.contracts_dir, dataset)
    try:
        return compile_contract(contract)
    except ContractError as exc:
        raise _unusable(dataset, exc) from exc


def check_context(settings: Settings, today: dt.date | None = None) -> CheckContext:
    codes = frozenset(load_region_codes(settings.district_code))
    return CheckContext(today=today or dt.date.today(), region_codes=codes)


class _Remembered:
    """A secret resolver whose every answer is also remembered as a value to scrub."""

    def __init__(self, resolver: ChainedSecrets) -> None:
        self._resolver = resolver

    def resolve(self, name: str, *, connector: str) -> str:
        value = self._resolver.resolve(name, connector=connector)
        remember_secrets([value])
        return value


# The first top-level ``id:`` of a contract file, read without parsing it (it may not parse).
_ID_LINE = re.compile(r"^id:[ \t]*['\"]?([^'\"#\s]+)", re.MULTILINE)


def contract_for(directory: Path, dataset: str) -> Contract:
    """The contract of ``dataset`` in ``directory``; a file that does not load fails only the
    dataset it declares (its ``id:`` line, else its file name).

    ``contracts.model.contract_by_id`` loads the whole folder and refuses all of it for one
    broken file: one dataset's typo then stopped every connector of the run (issue "Hostile
    input"). When it refuses, the folder is read again file by file.
    """
    try:
        return contract_by_id(directory, dataset)
    except ContractError as refused:
        whole = refused
    found: list[tuple[Path, Contract]] = []
    broken: list[Path] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            contract = load_contract(path)
        except ContractError as exc:
            if _declared_id(path) == dataset:
                raise _unusable(dataset, exc) from exc
            broken.append(path)
            continue
        if contract.id == dataset:
            found.append((path, contract))
    if len(found) == 1:
        return found[0][1]
    if not broken:
        raise whole  # missing or defined twice: contract_by_id's own words
    if len(found) > 1:
        files = ", ".join(str(path) for path, _ in found)
        raise ContractError(f"contract id {dataset!r} is defined twice: {files}")
    not_loaded = ", ".join(str(path) for path in broken)
    raise ContractError(
        f"no contract with id {dataset!r} in {directory} (files that do not load: {not_loaded})"
    )


def _unusable(dataset: str, exc: ContractError) -> ContractError:
    return ContractError(f"the contract of dataset {dataset!r} cannot be used: {one_line(str(exc))}")


def _declared_id(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return path.stem
    match = _ID_LINE.search(text)
    return match.group(1) if match else path.stem


def signing_key(settings: Settings) -> tuple[SigningKey, bool]:
    """The log's active signing key, created encrypted (of the configured suite) on first use.

    The passphrase comes from ``ONCEONLY_KEY_PASSPHRASE``, the Prefect Secret named by
    ``ONCEONLY_KEY_PASSPHRASE_SECRET`` or ``ONCEONLY_KEY_PASSPHRASE_FILE``. The keyring's active
    key signs whatever its suite; when ``ONCEONLY_SIGNATURE_SUITE`` names another, a warning
    says how to switch (``onceonly keys rotate --suite ...``).
    """
    return open_key_store(settings).load_or_create(settings.log_origin, settings.signature_suite)


_OPEN: dict[str, tuple[str, Pipeline]] = {}
_LOCK = threading.Lock()


def pipeline_for(settings: Settings) -> Pipeline:
    """One Pipeline per distinct settings in this process (flows and subflows share it).

    Reopened when the keyring changed (``keys rotate``, ``keys compromise``): a long-lived
    process must not go on signing with a retired key.
    """
    secret = settings.key_passphrase.get_secret_value() if settings.key_passphrase else ""
    private = f"{secret}\x00{settings.database_url or ''}"  # both hidden in the JSON form
    key = settings.model_dump_json() + hashlib.sha256(private.encode()).hexdigest()
    stamp = _keyring_stamp(settings)
    with _LOCK:
        if key not in _OPEN or _OPEN[key][0] != stamp:
            pipeline = Pipeline.open(settings)  # may create the key, and so the keyring
            _OPEN[key] = (_keyring_stamp(settings), pipeline)
        return _OPEN[key][1]


def _keyring_stamp(settings: Settings) -> str:
    try:
        stat = (settings.keys_dir / KEYRING_FILE).stat()
    except FileNotFoundError:
        return ""
    return f"{stat.st_mtime_ns}:{stat.st_size}:{stat.st_ino}"


__all__ = [
    "Pipeline",
    "check_context",
    "compiled_contract",
    "contract_for",
    "make_connector",
    "pipeline_for",
    "signing_key",
]

"""Wiring: the stage objects one run needs, built once from the settings.

Example::

    pipeline = Pipeline.open(Settings())
    pipeline.compiled("household")          # CompiledContract
    pipeline.connector("gongan-household")  # a ready connector

No business logic lives here; it only connects the stages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass

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
from contracts.model import contract_by_id
from evidence.keys import KEYRING_FILE, SigningKey, open_key_store
from evidence.log import TransparencyLog
from evidence.merkle import tree_hash
from lake.parquet import ParquetLake
from onceonly.errors import ConfigurationError
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
            lake=ParquetLake(settings.lake_dir),
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
        secrets = ChainedSecrets(EnvironmentSecrets(), PrefectSecrets())
        return create_connector(
            self.registration(name),
            self.settings.home,
            secrets,
            paths=SourcePaths.of(self.settings),
            limits=self.settings.limits,
        )

    def compiled(self, dataset: str) -> CompiledContract:
        return compile_contract(contract_by_id(self.settings.contracts_dir, dataset))

    def data_docs(self) -> DataDocs:
        if self._data_docs is None:
            self._data_docs = DataDocs(
                self.settings.datadocs_dir,
                base_url=self.settings.datadocs_url,
                retention_days=self.settings.datadocs_retention_days,
            )
        return self._data_docs

    def check_context(self, today: dt.date | None = None) -> CheckContext:
        codes = frozenset(load_region_codes(self.settings.district_code))
        return CheckContext(today=today or dt.date.today(), region_codes=codes)


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


__all__ = ["Pipeline", "pipeline_for", "signing_key"]

"""The one settings object, built at the edge (CLI, flow entry) and handed down.

Example::

    settings = Settings()                      # reads ONCEONLY_* from the environment / .env
    settings = Settings(home=tmp_path)         # tests pass values explicitly
    engine = create_engine(settings.catalog_url)

Modules below the edge never read ``os.environ``; secrets of department systems are resolved
by name through ``connectors.secrets`` at the last moment.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from onceonly.limits import Limits

_REPO_ROOT = Path(__file__).resolve().parent.parent
# Where signature suites register (evidence.suites.SUITE_ENTRY_POINTS): their names are read
# from the package metadata, so the ground floor never imports the evidence stage.
_SUITE_ENTRY_POINTS = "onceonly.signature_suites"
_DEFAULT_SUITE = "ed25519"


def signature_suite_names() -> list[str]:
    """The names of the registered signature suites (entry points; nothing is imported), the
    default first, in the order of ``evidence.suites.SUITES``."""
    names = {ep.name for ep in importlib.metadata.entry_points(group=_SUITE_ENTRY_POINTS)}
    return sorted(names, key=lambda name: (name != _DEFAULT_SUITE, name))


# An option naming a credential (key, secret, token, password, credentials), at any depth.
_CREDENTIAL = re.compile(r"^key$|secret|token|password|credential", re.IGNORECASE)


def _local_lake(url: str) -> Path | None:
    """The folder a lake URL names when it is local (a path, or file://), else None (s3://…)."""
    if "://" not in url:
        return Path(url)
    scheme = url.split("://", 1)[0].lower()
    return Path(unquote(urlsplit(url).path)) if scheme in ("file", "local") else None


# The fsspec/s3fs storage options a URL lake accepts ("client_kwargs.x": a key inside one).
_LAKE_OPTIONS = frozenset(
    {
        "endpoint_url",
        "region_name",
        "use_ssl",
        "anon",
        "requester_pays",
        "default_block_size",
        "default_fill_cache",
        "version_aware",
        "client_kwargs",
        "client_kwargs.endpoint_url",
        "client_kwargs.region_name",
        "client_kwargs.verify",
        "config_kwargs",
        "config_kwargs.connect_timeout",
        "config_kwargs.read_timeout",
        "config_kwargs.retries",
        "config_kwargs.max_pool_connections",
        "config_kwargs.signature_version",
        "config_kwargs.s3",
    }
)


def _option_keys(options: dict[str, Any]) -> list[tuple[str, str]]:
    """(prefix, key) of the options and of the keys of their two nested dicts."""
    keys = [("", str(k)) for k in options]
    for name in ("client_kwargs", "config_kwargs"):
        nested = options.get(name)
        if isinstance(nested, dict):
            keys += [(f"{name}.", str(k)) for k in nested]
    return keys


def _option_values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _option_values(item)]
    return [value]


def _has_userinfo(value: Any) -> bool:
    return isinstance(value, str) and "://" in value and "@" in urlsplit(value).netloc


class Settings(BaseSettings):
    """Everything configurable, with embedded defaults that need no server."""

    model_config = SettingsConfigDict(env_prefix="ONCEONLY_", env_file=".env", extra="ignore")

    home: Path = Field(Path("var"), description="Everything OnceOnly writes lies under this folder.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the catalog; default a SQLite file under home."
    )
    lake_url: str | None = Field(
        None,
        description=(
            "Folder or fsspec URL (s3://bucket/prefix) of the Parquet lake; default home/lake. "
            "An s3:// lake takes its credentials and endpoint from the AWS environment (AWS_ACCESS_KEY_ID, "
            "AWS_ENDPOINT_URL, ...) or lake_storage_options."
        ),
    )
    lake_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            'fsspec storage options of a URL lake, as JSON: {"endpoint_url": "http://minio:9000"}. '
            "No credentials: they would travel with the flow-run parameters (use the AWS environment)."
        ),
    )
    key_passphrase: SecretStr | None = Field(
        None, description="Passphrase of the signing key (PKCS#8, encrypted at rest)."
    )
    key_passphrase_secret: str | None = Field(
        None,
        description="Name of a Prefect Secret block holding the key passphrase, if the variable is unset.",
    )
    key_passphrase_file: Path | None = Field(
        None,
        description=(
            "File holding the key passphrase (mode 600), read when ONCEONLY_KEY_PASSPHRASE is unset; "
            "default home/secrets/key-passphrase if it exists (where `onceonly demo` keeps the demo's)."
        ),
    )
    signature_suite: str = Field(
        _DEFAULT_SUITE,
        description=(
            "Signature suite of NEW signing keys (`keys init`, `keys rotate` without --suite, the "
            "first run); the keyring's active key signs whatever its suite. Registered suites: the "
            "onceonly.signature_suites entry points."
        ),
    )
    log_origin: str = Field(
        "onceonly.example/wuqing/evidence",
        description="C2SP checkpoint origin line, also the signing key's name.",
    )
    log_hash: Literal["sha256", "sm3"] = Field(
        "sha256",
        description="Hash of the transparency log (RFC 9162 SHA-256, or SM3); fixed by its first entry.",
    )
    witnesses: str | None = Field(
        None,
        description=(
            "The district's witnesses (c2sp.org/tlog-witness), which cosign its checkpoints: a JSON "
            'list of {"url", "vkey"[, "name"]} objects, or the path of a JSON or YAML file holding one.'
        ),
    )
    district_code: str = Field("120114", description="GB/T 2260 code of the district served.")
    batch_size: int = Field(
        10_000,
        ge=1,
        description=(
            "Rows per record batch. Memory grows with it; each batch's validation also has a fixed "
            "Great Expectations cost (about 0.1 s of CPU for a 30-rule suite), see README."
        ),
    )
    connector_attempts: int = Field(
        3, ge=1, description="Attempts per connector per run on transient errors (resumes from the cursor)."
    )
    retry_wait_seconds: float = Field(
        5.0, ge=0, description="First wait between attempts; doubles each time."
    )
    lease_seconds: float = Field(
        1800,
        gt=0,
        description="How long a run may hold a connector without landing a batch before another may.",
    )
    heartbeat_seconds: float = Field(
        30,
        gt=0,
        description=(
            "A running flow proves it is alive this often; another host takes over its connectors "
            "after four missed beats (on the same host, as soon as its process is gone)."
        ),
    )
    task_runner: Literal["thread", "dask"] = Field(
        "thread",
        description=(
            "Prefect task runner of the daily flow: thread, or dask (connectors pull and validate in "
            "parallel on a Dask cluster; landing stays one connector at a time)."
        ),
    )
    dask_address: str | None = Field(
        None,
        description="Scheduler of a running Dask cluster (tcp://host:8786); default a LocalCluster per run.",
    )
    dask_workers: int | None = Field(
        None, ge=1, description="Worker processes of the LocalCluster (a thread each); default one per core."
    )
    key_max_age_days: int = Field(
        365,
        gt=0,
        description="Rotate a signing key by this age; the watch flow warns before (onceonly.key.expiring).",
    )
    key_warn_days: int = Field(
        30, ge=0, description="How many days before a signing key's max age the watch flow starts warning."
    )
    registrations_dir: Path = Field(
        _REPO_ROOT / "connectors" / "registrations",
        description="Folder of connector registration files (*.yaml).",
    )
    contracts_dir: Path = Field(
        _REPO_ROOT / "contracts" / "datasets", description="Folder of data contracts (*.yaml)."
    )
    matters_file: Path = Field(_REPO_ROOT / "sharing" / "matters.yaml", description="The matters catalogue.")
    limits: Limits = Field(
        default_factory=Limits,
        description="What a reader of department data accepts (ONCEONLY_LIMIT_<NAME>, see README).",
    )
    source_roots: str | None = Field(
        None,
        description=(
            "Folders (os.pathsep-separated) and URL prefixes a registration may read from or write "
            "to (drop, archive and snapshot folders, SQLite files); default home/departments."
        ),
    )
    datadocs_url: str | None = Field(
        None,
        description="Base URL where home/datadocs is served, for the Data Docs links; default file://.",
    )
    datadocs_retention_days: int = Field(
        90,
        ge=1,
        description="Days a run's Data Docs pages are kept (each run's Prefect artifact links them).",
    )
    # --- township extracts (sharing.extracts) ---
    extracts_in_clear: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Personal fields a matter needs in clear in the township extracts, as JSON: matter code -> "
            'fields (holder_name, holder_id), e.g. {"temporary-assistance": ["holder_name"]}. Every other '
            "field the contract classifies restricted, confidential or secret is masked; each field in "
            "clear is named, with the matter, in the extract's manifest."
        ),
    )

    @field_validator("extracts_in_clear")
    @classmethod
    def _no_citizen_id_in_clear(cls, wanted: dict[str, list[str]]) -> dict[str, list[str]]:
        # A person's holder_id is a 居民身份证 number: never in clear in an extract (an
        # organisation's holder_id, a public USCC, is in clear already by its contract).
        asked = sorted(code for code, fields in wanted.items() if "holder_id" in fields)
        if asked:
            raise ValueError(
                f"ONCEONLY_EXTRACTS_IN_CLEAR: holder_id cannot be in clear ({', '.join(asked)}): a person's "
                "居民身份证 number is always masked in township extracts (110101********1234); only "
                "holder_name can be asked for"
            )
        return wanted

    # --- benefit rules (sharing.benefits) ---
    benefit_rules_dir: Path = Field(
        _REPO_ROOT / "sharing" / "benefits",
        description="Folder of the 免申即享 benefit rules (*.yaml, one per policy).",
    )
    # --- approvals to supervision (sharing.supervision) ---
    supervision_dataset: str = Field(
        "approval", description="The dataset whose landed rows are approvals pushed to their supervisor."
    )
    supervision_url: str = Field(
        "http://127.0.0.1:18931/api/v1",
        description=(
            "Base URL of the supervising department's endpoint (审管联动); default the demo supervisor "
            "(`onceonly supervision serve-demo`)."
        ),
    )
    supervision_token_secret: str = Field(
        "ONCEONLY_SECRET_SUPERVISION_TOKEN",
        description=(
            "NAME of the secret holding the supervisor's bearer token (an environment variable or the "
            "Prefect Secret block onceonly-secret-supervision-token), resolved when pushing, never stored."
        ),
    )
    supervision_unread_hours: float = Field(
        24, gt=0, description="An approval pushed and not read (签收) after this many hours raises an event."
    )
    supervision_feedback_days: float = Field(
        15,
        gt=0,
        description="An approval pushed and without feedback (监管结果) after this many days: an event.",
    )
    supervision_timeout_seconds: float = Field(
        10, gt=0, description="Timeout of one request to the supervisor (a slow answer is retried)."
    )
    supervision_attempts: int = Field(
        3, ge=1, description="Attempts per push or receipt pull on transient errors (timeouts, 5xx, refused)."
    )
    # --- expiry reminders (sharing.reminders) ---
    reminders_file: Path = Field(
        _REPO_ROOT / "sharing" / "reminders.yaml",
        description=(
            "证照到期提醒: days before valid_to each certificate type is reminded (a default and "
            "per-type windows); see sharing/reminders.py."
        ),
    )
    # --- bottleneck loop (sharing.bottlenecks) ---
    bottleneck_min_citizens: int = Field(
        1,
        ge=0,
        description=(
            "办事堵点: a quarantined record gets a work order once it stopped this many citizens at a "
            "counter (0: every record failing an error rule gets one)."
        ),
    )
    bottleneck_trend_runs: int = Field(
        14, ge=1, description="How many recent bottleneck runs the trend artifact shows."
    )

    @model_validator(mode="after")
    def _passphrase_from_file(self) -> Settings:
        if self.key_passphrase is not None or self.key_passphrase_secret:
            return self
        path = self.key_passphrase_file or self.home / "secrets" / "key-passphrase"
        if self.key_passphrase_file is None and not path.exists():
            return self
        try:
            mode = path.stat().st_mode & 0o777
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the key passphrase file {path}: {exc}") from None
        if mode & 0o077:
            raise ValueError(
                f"the key passphrase file {path} is readable by others (mode {mode:o}): chmod 600 {path}"
            )
        if text:
            self.key_passphrase = SecretStr(text)
        return self

    @field_serializer("database_url", when_used="json")
    def _url_without_password(self, url: str | None) -> str | None:
        # Settings travel as flow-run parameters, which Prefect stores: never with a password.
        if url is None:
            return None
        from sqlalchemy import make_url

        return make_url(url).render_as_string(hide_password=True)

    @field_validator("database_url")
    @classmethod
    def _no_password_in_the_query(cls, url: str | None) -> str | None:
        # A password in the query string is not hidden where a URL is shown without its
        # password (flow-run parameters, which Prefect stores): only the URL's own password is.
        if url is None:
            return None
        from sqlalchemy import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            query = make_url(url).query
        except ArgumentError:
            raise ValueError("ONCEONLY_DATABASE_URL is not a database URL") from None
        if {k.lower() for k in query} & {"password", "passwd", "pwd", "sslpassword"}:
            raise ValueError(
                "ONCEONLY_DATABASE_URL carries a password in its query string: put it in the URL's "
                "password part (postgresql+psycopg://user:PASSWORD@host/db) or in PGPASSWORD"
            )
        return url

    @field_validator("lake_storage_options")
    @classmethod
    def _no_credentials_in_the_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        # Settings travel as flow-run parameters, which Prefect stores: a secret key must not.
        def named(value: Any) -> list[str]:
            if not isinstance(value, dict):
                return []
            found = [str(k) for k in value if _CREDENTIAL.search(str(k))]
            return found + [k for v in value.values() for k in named(v)]

        if found := named(options):
            raise ValueError(
                f"ONCEONLY_LAKE_STORAGE_OPTIONS holds credentials ({', '.join(sorted(found))}): give them "
                "through the object store's own environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                "a profile, an instance role) instead"
            )
        # Only options known to carry no secret (an SSE-C key, another store's account key, a
        # password in an endpoint URL would all be stored with the parameters).
        keys = [where + key for where, key in _option_keys(options)]
        unknown = [key for key in keys if key not in _LAKE_OPTIONS]
        if unknown:
            raise ValueError(
                f"ONCEONLY_LAKE_STORAGE_OPTIONS: {', '.join(unknown)} not accepted (known: "
                f"{', '.join(sorted(_LAKE_OPTIONS))}); secrets belong in the object store's environment"
            )
        if any(_has_userinfo(value) for value in _option_values(options)):
            raise ValueError("ONCEONLY_LAKE_STORAGE_OPTIONS: a URL with a user or password is refused")
        return options

    @field_validator("lake_url")
    @classmethod
    def _no_credentials_in_the_lake_url(cls, url: str | None) -> str | None:
        if url is not None and _has_userinfo(url):
            raise ValueError(
                "ONCEONLY_LAKE_URL carries a user or password: give them through the AWS environment"
            )
        return url

    @field_validator("signature_suite")
    @classmethod
    def _known_suite(cls, value: str) -> str:
        known = signature_suite_names()
        if value not in known:
            raise ValueError(f"unknown signature suite {value!r}; known suites: {', '.join(known)}")
        return value

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'catalog.db').resolve()}"

    @property
    def lake_is_local(self) -> bool:
        """Whether the lake is a local (or mounted) folder rather than an object store's URL."""
        return not self.lake_url or _local_lake(self.lake_url) is not None

    @property
    def lake_dir(self) -> Path:
        """The lake's local folder; meaningless for a URL lake (see ``lake_location``)."""
        if not self.lake_url:
            return self.home / "lake"
        return _local_lake(self.lake_url) or Path(self.lake_url)

    @property
    def lake_location(self) -> str:
        """Where the lake is, as opened and shown: its absolute folder, or its URL (s3://bucket/prefix)."""
        return str(self.lake_dir.resolve()) if self.lake_is_local else str(self.lake_url)

    @property
    def extracts_dir(self) -> Path:
        return self.home / "extracts"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def datadocs_dir(self) -> Path:
        """The Great Expectations Data Docs site of the validations."""
        return self.home / "datadocs"

    @property
    def departments_dir(self) -> Path:
        """Where the generated demo department systems live."""
        return self.home / "departments"


__all__ = ["Settings", "signature_suite_names"]

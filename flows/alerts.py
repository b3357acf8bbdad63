"""Alerts that reach someone: OnceOnly's automations on a Prefect server, and where they notify.

Example (what ``onceonly alerts install`` does)::

    plan = alert_plan(settings)                      # shipped files + one freshness automation
    block_id = save_webhook_block("https://…/hook")  #   per registered dataset
    installed = install(plan, block_id)              # created or updated by name; ours no
                                                     # longer planned are deleted

Two kinds of automation, all tagged ``onceonly-managed`` and named ``onceonly-…`` (no other
automation is ever changed or deleted):

- **shipped** — ``deployments/automations/*.yaml``, Prefect's own automation format (what
  ``prefect automation create --from-file`` reads) whose ``send-notification`` actions leave out
  the block: a breach, a failed connector, a recovered dataset, a key to rotate, an audit that
  disagrees, a witness that refused (``flows.events`` lists the events);
- **freshness** — one *proactive* automation per registered dataset, from its contract's
  ``frequency`` + ``latency`` (``contracts.sla``): it fires when no ``onceonly.batch.landed``
  event of that dataset arrived within the window (Prefect evaluates proactive triggers on the
  server, so a silent source is noticed even when no flow runs at all), again each window while
  the source stays silent, and ``onceonly-dataset-recovered`` says when data lands again.

Notifications go through one Prefect notification block: by default a
``CustomWebhookNotificationBlock`` named ``onceonly-alerts`` that POSTs
``{"subject", "body", "source"}`` as JSON; ``--block`` names any notification block made in the
UI instead (Slack, e-mail, 企业微信 through a webhook…). A webhook token is given by name
(``--token-secret NAME``: the CLI reads that environment variable when it installs, and the
value is kept in the block's encrypted secret fields, sent as ``Authorization: Bearer``); a
credential inside the URL is refused, since the URL is shown to whoever can read the block.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from onceonly.errors import ConfigurationError, OnceOnlyError
from onceonly.settings import Settings
from onceonly.yamlfile import read_yaml

AUTOMATIONS_DIR = Path(__file__).resolve().parents[1] / "deployments" / "automations"
TAG = "onceonly-managed"  # only automations carrying it (and named onceonly-…) are ever changed
PREFIX = "onceonly-"
BLOCK_NAME = "onceonly-alerts"
_KEYS = {
    "name",
    "description",
    "enabled",
    "tags",
    "trigger",
    "actions",
    "actions_on_trigger",
    "actions_on_resolve",
}
_ACTION_LISTS = ("actions", "actions_on_trigger", "actions_on_resolve")


@dataclass
class AlertPlan:
    """The automations to install (by name, without their block), and what could not be planned."""

    automations: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # name -> the file or contract it came from
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Installed:
    created: list[str]
    updated: list[str]
    deleted: list[str]


def shipped_automations(directory: Path = AUTOMATIONS_DIR) -> AlertPlan:
    """Read the automation files; a problem names the file (and line)."""
    plan = AlertPlan()
    for path in sorted(directory.glob("*.yaml")):
        data, _ = read_yaml(path.read_text(encoding="utf-8"), str(path))
        if not isinstance(data, dict):
            raise ConfigurationError(f"{path}: an automation is a mapping (name, trigger, actions)")
        unknown = set(data) - _KEYS
        if unknown:
            raise ConfigurationError(
                f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})"
            )
        name = data.get("name")
        if not isinstance(name, str) or not name.startswith(PREFIX):
            raise ConfigurationError(f"{path}: its name must start with {PREFIX!r} (it is {name!r})")
        if name in plan.automations:
            raise ConfigurationError(f"{path}: automation {name!r} is also in {plan.sources[name]}")
        _check(data, str(path))
        plan.automations[name] = data
        plan.sources[name] = str(path)
    return plan


def freshness_automations(settings: Settings, datasets: Iterable[str]) -> AlertPlan:
    """One proactive automation per dataset whose contract sets a ``frequency``."""
    from contracts.sla import SlaUnitError, freshness_window
    from flows.pipeline import contract_for

    plan = AlertPlan()
    for dataset in sorted(set(datasets)):
        try:
            window = freshness_window(contract_for(settings.contracts_dir, dataset))
        except (OnceOnlyError, SlaUnitError) as exc:
            plan.problems.append(f"dataset {dataset}: no freshness automation: {exc}")
            continue
        if window is None:
            plan.problems.append(
                f"dataset {dataset}: no freshness automation: its contract sets no frequency"
            )
            continue
        seconds = max(int(window.within.total_seconds()), 10)  # Prefect's least proactive window
        name = f"{PREFIX}freshness-{dataset}"
        plan.automations[name] = {
            "name": name,
            "description": f"数据集 {dataset} 超过 SLA（{window.describe()}）未入库时通知。",
            "trigger": {
                "type": "event",
                "posture": "Proactive",
                "expect": ["onceonly.batch.landed"],
                "match": {"prefect.resource.id": f"onceonly.dataset.{dataset}"},
                "threshold": 1,
                "within": seconds,
            },
            "actions": [
                {
                    "type": "send-notification",
                    "subject": f"【OnceOnly】数据超时未更新：{dataset}",
                    "body": (
                        f"数据集 {dataset} 在 {_words(seconds)}内没有新批次入库，超过数据合同的 SLA"
                        f"（{window.describe()}）。\n"
                        "请检查部门系统是否停止更新、连接器是否失败（`onceonly connectors list`），"
                        "或运行 `onceonly watch` 查看各数据集的最后入库时间。恢复入库后会另行通知。"
                    ),
                }
            ],
        }
        plan.sources[name] = f"contract of dataset {dataset} (slaProperties)"
    return plan


def alert_plan(settings: Settings, directory: Path = AUTOMATIONS_DIR) -> AlertPlan:
    """Shipped automations plus the freshness ones of every registered dataset: those in the
    catalog and those of the registration files the next run registers. Reads only: a mistyped
    home leaves no catalog behind."""
    from catalog import Catalog
    from connectors.registration import load_registration
    from connectors.registry import registered
    from onceonly.errors import CatalogRefused

    datasets: set[str] = set()
    try:
        catalog = Catalog.connect(settings.catalog_url, create=False)
    except CatalogRefused:
        catalog = None  # nothing has run yet: the registration files say what will be pulled
    if catalog is not None:
        try:
            datasets |= {r.dataset for r in registered(catalog).values()}
        finally:
            catalog.dispose()
    plan = shipped_automations(directory)
    for path in sorted(settings.registrations_dir.glob("*.yaml")):
        try:
            datasets.add(load_registration(path).dataset)
        except OnceOnlyError as exc:
            plan.problems.append(f"{path.name}: not read: {exc}")
    fresh = freshness_automations(settings, datasets)
    plan.automations.update(fresh.automations)
    plan.sources.update(fresh.sources)
    plan.problems += fresh.problems
    return plan


def save_webhook_block(url: str, *, token: str | None = None, name: str = BLOCK_NAME) -> UUID:
    """Save (or overwrite) the ``onceonly-alerts`` webhook block; its document id. ``token`` goes to
    the block's encrypted secret fields (Prefect sends the notification, so it must hold it)."""
    from urllib.parse import parse_qsl, urlsplit

    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from connectors.registration import CREDENTIAL_PARAMS

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("the webhook URL must be an http:// or https:// URL with a host")
    named = sorted({k.lower() for k, _ in parse_qsl(parts.query, keep_blank_values=True)} & CREDENTIAL_PARAMS)
    if parts.username or parts.password or named:
        where = "before the @" if parts.username or parts.password else f"in its query ({', '.join(named)})"
        raise ConfigurationError(
            f"the webhook URL carries a credential {where}: the URL is shown to anyone who can read "
            "the block; give the token by name instead (--token-secret NAME, sent as a bearer token)"
        )
    secrets: dict[str, str] = {}
    headers: dict[str, str] | None = None
    if token:
        secrets["token"] = token
        headers = {"Authorization": "Bearer {{token}}"}
    block = CustomWebhookNotificationBlock(
        name="OnceOnly",
        url=url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "onceonly"},
        headers=headers,
        secrets=secrets,  # pydantic turns the dict into a SecretDict
    )
    saved: UUID = block.save(name, overwrite=True)  # type: ignore[assignment]  # sync here
    return saved


def existing_block(name: str) -> UUID:
    """The document id of a notification block made elsewhere (e.g. in the UI)."""
    from prefect.blocks.abstract import NotificationBlock
    from prefect.blocks.core import Block

    try:
        block = Block.load(name)
    except ValueError as exc:
        raise ConfigurationError(
            f"no block {name!r} on the Prefect server (write it as <type>/<name>)"
        ) from exc
    if not isinstance(block, NotificationBlock) or block._block_document_id is None:
        raise ConfigurationError(f"block {name!r} is not a notification block")
    return block._block_document_id


def install(plan: AlertPlan, block_document_id: UUID) -> Installed:
    """Create each planned automation, or update it when it differs; delete ours no longer planned.

    An automation whose definition is unchanged is left alone: updating it would restart its
    window on the server (a freshness window, a once-a-day limit). Two of ours with one name
    (made by hand, or by two installs at once): the first is kept, the others deleted.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    created: list[str] = []
    updated: list[str] = []
    deleted: list[str] = []
    with get_client(sync_client=True) as client:
        ours: dict[str, Any] = {}
        for automation in _ours(client):
            if automation.name in ours:
                client.delete_automation(automation.id)
                deleted.append(automation.name)
            else:
                ours[automation.name] = automation
        for name, spec in sorted(plan.automations.items()):
            automation = AutomationCore.model_validate(_with_block(spec, block_document_id))
            if name not in ours:
                client.create_automation(automation)
                created.append(name)
            elif _definition(ours[name]) != _definition(automation):
                client.update_automation(ours[name].id, automation)
                updated.append(name)
        for name, existing in sorted(ours.items()):
            if name not in plan.automations:
                client.delete_automation(existing.id)
                deleted.append(name)
    return Installed(created, updated, deleted)


def uninstall() -> list[str]:
    """Delete every OnceOnly automation (the block stays)."""
    from prefect.client.orchestration import get_client

    gone = []
    with get_client(sync_client=True) as client:
        for automation in _ours(client):
            client.delete_automation(automation.id)
            gone.append(automation.name)
    return sorted(gone)


def list_ours() -> list[Any]:
    """OnceOnly's automations on the server, by name."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return sorted(_ours(client), key=lambda a: a.name)


def _ours(client: Any) -> list[Any]:
    """Automations this module manages: tagged ``onceonly-managed`` and named ``onceonly-…``
    (an operator's own automation about OnceOnly's runs is never touched), every page."""
    found, offset = [], 0
    while True:
        page = client.read_automations(limit=200, offset=offset)
        found += [a for a in page if TAG in a.tags and a.name.startswith(PREFIX)]
        if len(page) < 200:
            return found
        offset += 200


def _definition(automation: Any) -> Any:
    """What an automation does, without the ids the server gives it (to compare two)."""
    from prefect.events.schemas.automations import AutomationCore

    core = AutomationCore.model_validate(automation.model_dump(mode="json"))
    return _canonical(core.model_dump(mode="json"))


def _canonical(value: Any) -> Any:
    """``value`` without ids, its lists of strings sorted: a trigger's ``expect``, ``after`` and
    ``for_each`` are sets, dumped in hash order, which differs between two equal sets built in
    another order (a re-install saw an unchanged automation as changed)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return sorted(value)
        return [_canonical(v) for v in value]
    return value


def _with_block(spec: dict[str, Any], block_document_id: UUID) -> dict[str, Any]:
    out = {**spec, "tags": sorted({*spec.get("tags", []), TAG})}
    for key in _ACTION_LISTS:
        out[key] = [
            {**action, "block_document_id": str(block_document_id)}
            if action.get("type") == "send-notification"
            else action
            for action in spec.get(key, [])
        ]
    return out


def _check(spec: dict[str, Any], source: str) -> None:
    """Validate a file's automation as Prefect will, with a placeholder block."""
    from prefect.events.schemas.automations import AutomationCore
    from pydantic import ValidationError

    try:
        AutomationCore.model_validate(_with_block(spec, UUID(int=0)))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(f"{source}: {where}: {first['msg']}") from None


def _words(seconds: int) -> str:
    for unit, size in (("天", 86400), ("小时", 3600), ("分钟", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} 秒"


__all__ = [
    "AUTOMATIONS_DIR",
    "BLOCK_NAME",
    "AlertPlan",
    "Installed",
    "alert_plan",
    "existing_block",
    "freshness_automations",
    "install",
    "list_ours",
    "save_webhook_block",
    "shipped_automations",
    "uninstall",
]

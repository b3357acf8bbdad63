"""Alerts that reach someone: OnceOnly's automations on a Prefect server, and where they notify.

Example (what ``onceonly alerts install`` does)::

    plan = alert_plan(settings)                      # shipped files + one freshness automation
    block_id = save_webhook_block("https://…/hook")  #   per registered dataset
    installed = install(plan, block_id)              # created or updated by name; ours no
                                                     # longer planned are deleted

Two kinds of automation, all tagged ``onceonly`` and named ``onceonly-…``:

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
UI instead (Slack, e-mail, 企业微信 through a webhook…). A webhook token is referenced by name
(``--token-secret NAME``: the value is read from the environment once and kept in the block's
encrypted secret fields, sent as ``Authorization: Bearer``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from onceonly.errors import ConfigurationError, OnceOnlyError
from onceonly.settings import Settings
from onceonly.yamlfile import read_yaml

AUTOMATIONS_DIR = Path(__file__).resolve().parents[1] / "deployments" / "automations"
TAG = "onceonly"
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
    """Shipped automations plus the freshness ones of every registered dataset."""
    from catalog import Catalog
    from connectors.registry import register_directory, registered

    catalog = Catalog.connect(settings.catalog_url)
    try:
        register_directory(catalog, settings.registrations_dir)
        datasets = [r.dataset for r in registered(catalog).values()]
    finally:
        catalog.dispose()
    plan = shipped_automations(directory)
    fresh = freshness_automations(settings, datasets)
    plan.automations.update(fresh.automations)
    plan.sources.update(fresh.sources)
    plan.problems += fresh.problems
    return plan


def save_webhook_block(url: str, *, token_secret: str | None = None, name: str = BLOCK_NAME) -> UUID:
    """Save (or overwrite) the ``onceonly-alerts`` webhook block; its document id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"the webhook URL must start with http:// or https:// (got {url[:40]!r})")
    secrets: dict[str, str] = {}
    headers: dict[str, str] | None = None
    if token_secret:
        value = os.environ.get(token_secret)
        if not value:
            raise ConfigurationError(f"--token-secret {token_secret}: that environment variable is not set")
        secrets["token"] = value
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
    """Create or update each planned automation by name; delete ours that are no longer planned."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    created: list[str] = []
    updated: list[str] = []
    deleted: list[str] = []
    with get_client(sync_client=True) as client:
        ours = {a.name: a for a in client.read_automations() if TAG in a.tags or a.name.startswith(PREFIX)}
        for name, spec in sorted(plan.automations.items()):
            automation = AutomationCore.model_validate(_with_block(spec, block_document_id))
            if name in ours:
                client.update_automation(ours[name].id, automation)
                updated.append(name)
            else:
                client.create_automation(automation)
                created.append(name)
        for name, automation in sorted(ours.items()):
            if name not in plan.automations:
                client.delete_automation(automation.id)
                deleted.append(name)
    return Installed(created, updated, deleted)


def uninstall() -> list[str]:
    """Delete every OnceOnly automation (the block stays)."""
    from prefect.client.orchestration import get_client

    gone = []
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if TAG in automation.tags or automation.name.startswith(PREFIX):
                client.delete_automation(automation.id)
                gone.append(automation.name)
    return sorted(gone)


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
    "save_webhook_block",
    "shipped_automations",
    "uninstall",
]

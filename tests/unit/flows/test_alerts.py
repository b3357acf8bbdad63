from __future__ import annotations

import shutil
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from flows.alerts import (
    AUTOMATIONS_DIR,
    TAG,
    _with_block,
    freshness_automations,
    install,
    save_webhook_block,
    shipped_automations,
)
from flows.events import EVENTS
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def test_every_shipped_automation_is_valid_prefect_and_listens_to_our_events() -> None:
    from prefect.events.schemas.automations import AutomationCore

    plan = shipped_automations()
    assert set(plan.automations) == {
        "onceonly-approval-overdue",
        "onceonly-audit-failed",
        "onceonly-connector-failed",
        "onceonly-contract-breached",
        "onceonly-dataset-recovered",
        "onceonly-log-verify-failed",
        "onceonly-signing-key",
        "onceonly-witness-refused",
    }
    heard: set[str] = set()
    for spec in plan.automations.values():
        automation = AutomationCore.model_validate(_with_block(spec, UUID(int=7)))
        assert TAG in automation.tags
        assert automation.actions and all(a.block_document_id == UUID(int=7) for a in automation.actions)  # type: ignore[union-attr]
        heard |= set(automation.trigger.expect)  # type: ignore[union-attr]
    assert heard <= set(EVENTS)
    # Stale datasets notify through the proactive freshness automations; landings feed them.
    assert set(EVENTS) - heard == {"onceonly.batch.landed", "onceonly.dataset.stale"}


def test_one_proactive_freshness_automation_per_dataset_from_its_contract(home: Path) -> None:
    from prefect.events.schemas.automations import AutomationCore, Posture

    settings = Settings()
    plan = freshness_automations(settings, ["household", "marriage", "household"])
    assert set(plan.automations) == {"onceonly-freshness-household", "onceonly-freshness-marriage"}
    automation = AutomationCore.model_validate(
        _with_block(plan.automations["onceonly-freshness-household"], UUID(int=1))
    )
    trigger = automation.trigger
    assert trigger.posture == Posture.Proactive  # type: ignore[union-attr]
    assert trigger.expect == {"onceonly.batch.landed"}  # type: ignore[union-attr]
    assert trigger.match.model_dump() == {"prefect.resource.id": "onceonly.dataset.household"}  # type: ignore[union-attr]
    assert trigger.within.total_seconds() == 2 * 86400  # type: ignore[union-attr]
    assert "2 天" in automation.actions[0].body  # type: ignore[union-attr]
    assert not plan.problems


def test_a_dataset_without_a_usable_sla_is_named_not_silently_skipped(home: Path, tmp_path: Path) -> None:
    contracts = tmp_path / "contracts"
    shutil.copytree(ROOT / "contracts" / "datasets", contracts)
    data = yaml.safe_load((contracts / "marriage.yaml").read_text(encoding="utf-8"))
    data["slaProperties"] = [{"property": "frequency", "value": 1, "unit": "m"}]
    (contracts / "marriage.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    data = yaml.safe_load((contracts / "birth.yaml").read_text(encoding="utf-8"))
    data["slaProperties"] = [{"property": "retention", "value": 1, "unit": "y"}]
    (contracts / "birth.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    plan = freshness_automations(Settings(contracts_dir=contracts), ["marriage", "birth", "nosuch"])
    assert not plan.automations
    problems = "\n".join(plan.problems)
    assert "dataset marriage: no freshness automation: slaProperties frequency: unit 'm'" in problems
    assert "dataset birth: no freshness automation: its contract sets no frequency" in problems
    assert "dataset nosuch: no freshness automation" in problems


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "name: onceonly-x\ntrigger: {type: event}\nactions: []\nschedule: daily\n",
            "unknown key(s) schedule",
        ),
        ("name: my-alert\ntrigger: {type: event}\nactions: []\n", "must start with 'onceonly-'"),
        ("name: onceonly-x\ntrigger: {type: event, posture: Sideways}\nactions: []\n", "trigger"),
        ("- just a list\n", "an automation is a mapping"),
        ("name: onceonly-x\nname: onceonly-y\n", "line 2"),
    ],
)
def test_a_broken_automation_file_is_named_with_its_problem(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"bad\.yaml") as raised:
        shipped_automations(tmp_path)
    assert says in str(raised.value)


def test_two_files_may_not_define_one_automation(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        shutil.copy(AUTOMATIONS_DIR / "contract-breached.yaml", tmp_path / name)
    with pytest.raises(ConfigurationError, match="also in"):
        shipped_automations(tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        "https://ops:S3cretPw@hooks.example.org/x",
        "https://hooks.example.org/x?Token=abc123",
        "ftp://hooks.example.org/x",
        "https:///no-host",
    ],
)
def test_a_webhook_url_with_a_credential_or_no_http_host_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        save_webhook_block(url)
    assert "S3cretPw" not in str(raised.value) and "abc123" not in str(raised.value)


class FakeClient:
    """Prefect's automation endpoints, in memory."""

    def __init__(self, automations: list[object]) -> None:
        self.automations = automations
        self.calls: list[tuple[str, str]] = []

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read_automations(self, limit: int = 200, offset: int = 0) -> list[object]:
        return self.automations[offset : offset + limit]

    def create_automation(self, automation: object) -> None:
        self.calls.append(("create", automation.name))  # type: ignore[attr-defined]

    def update_automation(self, automation_id: object, automation: object) -> None:
        self.calls.append(("update", automation.name))  # type: ignore[attr-defined]

    def delete_automation(self, automation_id: object) -> None:
        name = next(a.name for a in self.automations if a.id == automation_id)  # type: ignore[attr-defined]
        self.calls.append(("delete", name))


def test_install_leaves_unchanged_and_foreign_automations_alone_and_keeps_one_per_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import prefect.client.orchestration as orchestration
    from prefect.events.schemas.automations import Automation

    from flows.alerts import AlertPlan

    plan = shipped_automations()
    block = UUID(int=3)

    def existing(name: str, n: int, *, tags: list[str] | None = None, body: str | None = None) -> Automation:
        spec = _with_block(plan.automations.get(name, plan.automations["onceonly-contract-breached"]), block)
        spec = {**spec, "name": name, "tags": tags if tags is not None else spec["tags"]}
        if body is not None:
            spec["actions"] = [{**spec["actions"][0], "body": body}]
        return Automation.model_validate({**spec, "id": str(UUID(int=100 + n))})

    server = [
        existing("onceonly-contract-breached", 1),  # as planned: left alone
        existing("onceonly-contract-breached", 2),  # a second one of that name: deleted
        existing("onceonly-connector-failed", 3, body="old text"),  # changed: updated
        existing("onceonly-freshness-gone", 4),  # ours, no longer planned: deleted
        existing("ops: a onceonly run crashed", 5, tags=["onceonly"]),  # the operator's: untouched
        existing("onceonly-own-idea", 6, tags=["onceonly"]),  # named like ours, not tagged: untouched
    ]
    fake = FakeClient(server)
    monkeypatch.setattr(orchestration, "get_client", lambda sync_client=True: fake)
    done = install(AlertPlan(dict(plan.automations), dict(plan.sources)), block)
    assert sorted(done.deleted) == ["onceonly-contract-breached", "onceonly-freshness-gone"]
    assert done.updated == ["onceonly-connector-failed"]
    assert "onceonly-contract-breached" not in done.created
    assert sorted(done.created) == sorted(
        set(plan.automations) - {"onceonly-contract-breached", "onceonly-connector-failed"}
    )
    touched = {name for _, name in fake.calls}
    assert "ops: a onceonly run crashed" not in touched and "onceonly-own-idea" not in touched


def test_an_automation_whose_sets_dump_in_another_order_is_unchanged() -> None:
    """A trigger's ``expect`` is a set: two equal sets built in another order can iterate in
    another order (a hash collision), and a re-install then saw the automation as changed."""
    from itertools import count

    from prefect.events.schemas.automations import AutomationCore

    from flows.alerts import _definition

    names = (f"onceonly.key.kind{i}" for i in count())
    first = next(names)
    second = next(n for n in names if list({first, n}) != list({n, first}))  # they collide here
    spec = _with_block(shipped_automations().automations["onceonly-signing-key"], UUID(int=3))

    def built(expect: list[str]) -> AutomationCore:
        return AutomationCore.model_validate({**spec, "trigger": {**spec["trigger"], "expect": expect}})

    one, other = built([first, second]), built([second, first])
    assert one.model_dump(mode="json") != other.model_dump(mode="json")  # the case is exercised
    assert _definition(one) == _definition(other)
    assert _definition(one) != _definition(built([first]))

"""deployments/prefect.yaml: every deployment loads and schedules, and the connector deployments
are what ``deployments/generate.py`` makes of connectors/registrations (never stale)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from connectors.registration import Registration, load_registrations
from deployments.generate import (
    BEGIN_MARKER,
    END_MARKER,
    PREFECT_FILE,
    connector_deployment,
    connector_section,
    render_connector_deployments,
    write_connector_deployments,
)
from onceonly.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[3]
REGISTRATIONS = ROOT / "connectors" / "registrations"
REGENERATE = "onceonly deployments write --registrations connectors/registrations"
# The deployments written by hand after the generated section, in the file's order.
HAND_WRITTEN = [
    "watch",
    "supervision",
    "benefits",
    "township-return",
    "township-return-full",
    "bottlenecks",
    "expiry-reminders",
]


def deployments() -> list[dict[str, Any]]:
    data = yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = data["deployments"]
    return found


def shipped() -> list[Registration]:
    return list(load_registrations(REGISTRATIONS).values())


def test_the_file_is_the_one_of_this_checkout() -> None:
    assert PREFECT_FILE == ROOT / "deployments" / "prefect.yaml"


def test_daily_deployment_points_at_the_flow_with_a_valid_schedule() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    (deployment,) = [d for d in deployments() if d["name"] == "daily"]
    path, func = deployment["entrypoint"].split(":")
    assert (ROOT / path).is_file()
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
    assert flow.name == "daily_sharing"
    assert deployment["parameters"] == {}  # every registered connector
    (schedule,) = deployment["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert (cron.cron, cron.timezone) == ("0 2 * * *", "Asia/Shanghai")
    assert deployment["work_pool"]["name"]


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["name"])
def test_every_deployment_loads_its_flow_and_schedules_in_shanghai(deployment: dict[str, Any]) -> None:
    from prefect.cli.deploy._models import DeploymentConfig
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import Flow

    DeploymentConfig.model_validate(deployment)  # the shape `prefect deploy` reads
    path, func = deployment["entrypoint"].split(":")
    assert (ROOT / path).is_file(), f"{deployment['name']}: no {path}"
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
    assert isinstance(flow, Flow)
    for schedule in deployment["schedules"]:
        cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
        assert cron.timezone == "Asia/Shanghai"
    limit = deployment["concurrency_limit"]  # two runs of one deployment never overlap
    assert limit["limit"] == 1
    ConcurrencyLimitStrategy(limit["collision_strategy"])
    assert deployment["work_pool"]["name"] == "onceonly"


def test_the_watch_deployment_runs_every_thirty_minutes() -> None:
    (watch,) = [d for d in deployments() if d["name"] == "watch"]
    assert watch["entrypoint"] == "flows/watch.py:watch"
    assert watch["schedules"] == [{"cron": "*/30 * * * *", "timezone": "Asia/Shanghai", "active": True}]


def test_the_connector_deployments_are_generated_from_the_registrations() -> None:
    committed = connector_section(PREFECT_FILE.read_text(encoding="utf-8"), str(PREFECT_FILE))
    assert committed == render_connector_deployments(shipped()), (
        f"deployments/prefect.yaml is stale: run `{REGENERATE}` from the repository root"
    )


def test_each_registration_has_its_pull_deployment_on_its_own_schedule() -> None:
    by_name = {d["name"]: d for d in deployments()}
    registrations = shipped()
    assert len({r.schedule for r in registrations}) == len(registrations)  # distinct, not all at 02:00
    for reg in registrations:
        deployment = by_name[f"pull-{reg.name}"]
        assert deployment["entrypoint"] == "flows/daily_sharing.py:daily_sharing"
        assert deployment["parameters"] == {"connectors": [reg.name]}
        assert deployment["tags"] == ["onceonly", "pull", reg.dataset]
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        assert deployment["schedules"] == [
            {"cron": reg.schedule, "timezone": "Asia/Shanghai", "active": True}
        ]


def test_a_registration_without_a_schedule_gets_a_deployment_without_one() -> None:
    reg = shipped()[0].model_copy(update={"schedule": None})
    (parsed,) = yaml.safe_load(render_connector_deployments([reg]))
    assert parsed["schedules"] == []
    assert parsed == connector_deployment(reg)


@pytest.mark.parametrize("name", ["no", "on", "12", "1e3", "null-x"])
def test_the_yaml_reads_back_as_the_deployment_whatever_the_names(name: str) -> None:
    reg = shipped()[0].model_copy(
        update={
            "name": name,
            "dataset": "true",
            "department": 'A "quoted": department',
            "schedule": "7 3 * * 1",
        }
    )
    assert yaml.safe_load(render_connector_deployments([reg])) == [connector_deployment(reg)]


@pytest.mark.parametrize("cron", ["0 2 * *", "61 * * * *", "every day", "0 0 2 * * *"])
def test_a_schedule_that_is_not_a_cron_is_refused_naming_the_connector(cron: str) -> None:
    reg = shipped()[0].model_copy(update={"schedule": cron})
    with pytest.raises(ConfigurationError, match=rf"connector '{reg.name}': schedule .* is not a cron"):
        render_connector_deployments([reg])


def test_rewriting_replaces_only_the_section_and_is_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "prefect.yaml"
    original = PREFECT_FILE.read_text(encoding="utf-8")
    target.write_text(original, encoding="utf-8")
    one = [r for r in shipped() if r.name == "gongan-household"]

    change = write_connector_deployments(target, one)

    assert change.written and change.unchanged == ["pull-gongan-household"] and not change.added
    assert len(change.removed) == len(shipped()) - 1
    text = target.read_text(encoding="utf-8")
    before, after = original.split(BEGIN_MARKER), text.split(BEGIN_MARKER)
    assert before[0] == after[0]  # the header, daily: as written by hand
    assert before[1].split(END_MARKER)[1] == after[1].split(END_MARKER)[1]  # watch and the rest
    assert [d["name"] for d in yaml.safe_load(text)["deployments"]] == [
        "daily",
        "pull-gongan-household",
        *HAND_WRITTEN,
    ]

    again = write_connector_deployments(target, one)
    assert not again.written and target.read_text(encoding="utf-8") == text

    back = write_connector_deployments(target, shipped())
    assert len(back.added) == len(shipped()) - 1 and not back.removed
    assert target.read_text(encoding="utf-8") == original


def test_a_changed_schedule_is_reported_as_changed(tmp_path: Path) -> None:
    target = tmp_path / "prefect.yaml"
    target.write_text(PREFECT_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    regs = [
        r.model_copy(update={"schedule": "0 3 * * *"}) if r.name == "weijian-births" else r for r in shipped()
    ]
    change = write_connector_deployments(target, regs)
    assert change.changed == ["pull-weijian-births"] and not change.added and not change.removed


@pytest.mark.parametrize("edit", ["no begin", "no end", "reversed", "twice"])
def test_missing_markers_are_a_clear_error_naming_the_file(tmp_path: Path, edit: str) -> None:
    text = PREFECT_FILE.read_text(encoding="utf-8")
    begin, end = f"  {BEGIN_MARKER}\n", f"  {END_MARKER}\n"
    assert begin in text and end in text
    edited = {
        "no begin": text.replace(begin, ""),
        "no end": text.replace(end, ""),
        "reversed": text.replace(begin, "@@").replace(end, begin).replace("@@", end),
        "twice": text.replace(end, end + begin + end),
    }[edit]
    target = tmp_path / "prefect.yaml"
    target.write_text(edited, encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        write_connector_deployments(target, shipped())
    assert str(info.value).startswith(f"{target}: ") and "connector deployments: generated by" in str(
        info.value
    )
    assert target.read_text(encoding="utf-8") == edited  # nothing written


def test_a_name_taken_by_a_hand_written_deployment_is_refused(tmp_path: Path) -> None:
    text = PREFECT_FILE.read_text(encoding="utf-8").replace(
        "  - name: watch\n", "  - name: pull-gongan-household\n"
    )
    target = tmp_path / "prefect.yaml"
    target.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="names used twice: pull-gongan-household"):
        write_connector_deployments(target, shipped())
    assert target.read_text(encoding="utf-8") == text


def test_the_command_writes_from_a_folder_and_prints_what_changed(tmp_path: Path) -> None:
    from cli.main import app

    target = tmp_path / "prefect.yaml"
    target.write_text(PREFECT_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    folder = tmp_path / "registrations"
    folder.mkdir()
    for name in ("gongan-household", "weijian-births"):
        (folder / f"{name}.yaml").write_text((REGISTRATIONS / f"{name}.yaml").read_text("utf-8"), "utf-8")

    done = CliRunner().invoke(
        app, ["deployments", "write", "--registrations", str(folder), "--file", str(target)]
    )

    assert done.exit_code == 0, done.output
    assert "removed  pull-scjg-licences" in done.output
    assert "prefect deployment delete daily_sharing/pull-scjg-licences" in done.output
    names = [d["name"] for d in yaml.safe_load(target.read_text(encoding="utf-8"))["deployments"]]
    assert names == ["daily", "pull-gongan-household", "pull-weijian-births", *HAND_WRITTEN]
    done = CliRunner().invoke(
        app, ["deployments", "write", "--registrations", str(folder), "--file", str(target)]
    )
    assert done.exit_code == 0 and "up to date (2 connector deployments" in done.output


def test_the_command_reads_the_catalogs_registrations_by_default(home: Path, tmp_path: Path) -> None:
    from catalog import Catalog
    from cli.main import app
    from connectors.registry import register
    from onceonly.settings import Settings

    catalog = Catalog.connect(Settings().catalog_url, create=True)
    try:
        text = (REGISTRATIONS / "renshe-insurance.yaml").read_text(encoding="utf-8")
        register(catalog, load_registrations(REGISTRATIONS)["renshe-insurance"], text)
    finally:
        catalog.dispose()
    target = tmp_path / "prefect.yaml"
    target.write_text(PREFECT_FILE.read_text(encoding="utf-8"), encoding="utf-8")

    done = CliRunner().invoke(app, ["deployments", "write", "--file", str(target)])

    assert done.exit_code == 0, done.output
    assert "from the catalog" in done.output and "unchanged" in done.output
    names = [d["name"] for d in yaml.safe_load(target.read_text(encoding="utf-8"))["deployments"]]
    assert names == ["daily", "pull-renshe-insurance", *HAND_WRITTEN]


@pytest.mark.parametrize("field", ["department", "description"])
def test_a_template_in_a_departments_text_is_refused_before_prefect_deploy_fills_it(field: str) -> None:
    from connectors.registration import parse_registration
    from deployments.generate import connector_deployment
    from onceonly.errors import ConfigurationError

    data = yaml.safe_load((ROOT / "connectors/registrations/gongan-household.yaml").read_text("utf-8"))
    data[field] = "民政局 {{ $ONCEONLY_KEY_PASSPHRASE }}"
    registration = parse_registration(yaml.safe_dump(data, allow_unicode=True), "x.yaml")
    with pytest.raises(ConfigurationError, match=f"its {field} holds a template"):
        connector_deployment(registration)


@pytest.mark.parametrize(
    ("name", "entrypoint", "cron"),
    [
        ("supervision", "flows/supervision.py:supervision", "*/10 * * * *"),
        ("benefits", "flows/benefits.py:benefits", "0 3 * * *"),
        ("township-return", "flows/township_return.py:township_return", "30 3 * * *"),
        ("township-return-full", "flows/township_return.py:township_return", "0 4 * * 0"),
        ("bottlenecks", "flows/bottlenecks.py:bottlenecks", "0 6 * * *"),
        ("expiry-reminders", "flows/reminders.py:expiry_reminders", "0 7 * * *"),
    ],
)
def test_each_township_flow_has_a_deployment_on_its_schedule(name: str, entrypoint: str, cron: str) -> None:
    (deployment,) = [d for d in deployments() if d["name"] == name]
    assert deployment["entrypoint"] == entrypoint
    assert deployment["schedules"] == [{"cron": cron, "timezone": "Asia/Shanghai", "active": True}]
    assert deployment["concurrency_limit"]["limit"] == 1
    path, function = entrypoint.split(":")
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), function)
    assert flow.name == name.removesuffix("-full")

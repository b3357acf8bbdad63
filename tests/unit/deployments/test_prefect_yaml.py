from __future__ import annotations

import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def test_daily_deployment_points_at_the_flow_with_a_valid_schedule() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    data = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = data["deployments"]
    path, func = deployment["entrypoint"].split(":")
    assert (ROOT / path).is_file()
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
    assert flow.name == "daily_sharing"
    (schedule,) = deployment["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert cron.timezone == "Asia/Shanghai"
    assert deployment["work_pool"]["name"]

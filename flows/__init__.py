"""Prefect flows: wire the stages together; no business logic lives here.

``flows.daily_sharing.daily_sharing`` is the daily job (deployed by ``deployments/prefect.yaml``).
"""

__all__: list[str] = []

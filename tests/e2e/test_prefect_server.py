"""The pinned Prefect/FastAPI pair must serve the client's own API calls, not only flow runs.

FastAPI >= 0.151 makes Prefect 3.8's server reject the client's filter requests (they send
``"limit": null``) with 422, which breaks `prefect deploy` and `prefect deployment ls` while
flows still run. This test keeps the pin in pyproject.toml honest.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_the_server_answers_the_clients_filter_requests(prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        assert isinstance(client.read_deployments(), list)
        assert isinstance(client.read_work_pools(), list)
        assert isinstance(client.read_flows(), list)

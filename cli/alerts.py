"""``onceonly alerts``: OnceOnly's automations on the Prefect server, notifying someone.

Example::

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    onceonly alerts install --webhook https://ops.example.org/hooks/onceonly
    onceonly alerts list
    onceonly alerts remove

``install`` saves the ``onceonly-alerts`` webhook block (or uses ``--block``), then creates or
updates every automation of ``deployments/automations/`` and one freshness automation per
registered dataset (``flows.alerts``); run it again after registering or removing a connector or
changing a contract's SLA (an unchanged automation is left alone; a changed one restarts its
window). Automations live on a server: without ``PREFECT_API_URL`` it refuses.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from onceonly.errors import ConfigurationError

app = typer.Typer(no_args_is_help=True, help="Automations that notify: install, list, remove.")


def _require_server() -> str:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
    if not url:
        raise ConfigurationError(
            "alerts live on a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api, "
            "`make server`); a temporary server would forget them when the command ends"
        )
    return url


@app.command("install")
def install(
    webhook: Annotated[
        str | None,
        typer.Option(
            help="The URL notifications are POSTed to as JSON {subject, body, source} "
            "(default: ONCEONLY_ALERT_WEBHOOK_URL).",
        ),
    ] = None,
    token_secret: Annotated[
        str | None,
        typer.Option(help="NAME of an environment variable holding the webhook's bearer token."),
    ] = None,
    block: Annotated[
        str | None,
        typer.Option(help="Use this notification block instead (<block type slug>/<name>, made in the UI)."),
    ] = None,
) -> None:
    """Create or update OnceOnly's automations and their notification block on the Prefect server."""
    from flows.alerts import BLOCK_NAME, alert_plan, existing_block, save_webhook_block
    from flows.alerts import install as install_plan
    from onceonly.settings import Settings

    api = _require_server()
    webhook = webhook or os.environ.get("ONCEONLY_ALERT_WEBHOOK_URL")
    if not block and not webhook:
        raise ConfigurationError(
            "say where notifications go: --webhook URL (or ONCEONLY_ALERT_WEBHOOK_URL), or --block NAME"
        )
    plan = alert_plan(Settings())  # reads only: checked before anything is saved
    if block:
        block_id = existing_block(block)
        where = f"block {block}"
    else:
        assert webhook is not None
        token = None
        if token_secret:
            token = os.environ.get(token_secret)
            if not token:
                raise ConfigurationError(
                    f"--token-secret {token_secret}: that environment variable is not set"
                )
        block_id = save_webhook_block(webhook, token=token)
        where = f"webhook block {BLOCK_NAME}"
    done = install_plan(plan, block_id)
    for name in done.created:
        typer.echo(f"created  {name}  ({plan.sources[name]})")
    for name in done.updated:
        typer.echo(f"updated  {name}  ({plan.sources[name]})")
    for name in done.deleted:
        typer.echo(f"deleted  {name}  (no longer planned)")
    for problem in plan.problems:
        typer.secho(f"warning: {problem}", fg="yellow", err=True)
    typer.echo(f"{len(plan.automations)} automation(s) on {api}, notifying through {where}")


@app.command("list")
def list_() -> None:
    """OnceOnly's automations on the server: name, trigger, enabled."""
    from flows.alerts import list_ours

    _require_server()
    ours = list_ours()
    if not ours:
        typer.echo("no OnceOnly automation: run `onceonly alerts install`")
        return
    for automation in ours:
        trigger = automation.trigger
        expect = ", ".join(sorted(getattr(trigger, "expect", ()) or ()))
        posture = getattr(getattr(trigger, "posture", None), "value", "?")
        within = getattr(trigger, "within", None)
        window = f" within {int(within.total_seconds())} s" if within else ""
        state = "enabled" if automation.enabled else "disabled"
        typer.echo(f"{automation.name}  {posture} on {expect}{window}  {state}")


@app.command("remove")
def remove() -> None:
    """Delete every OnceOnly automation from the server (the notification block stays)."""
    from flows.alerts import uninstall

    _require_server()
    gone = uninstall()
    typer.echo(f"deleted {len(gone)} automation(s){': ' + ', '.join(gone) if gone else ''}")


__all__ = ["app"]

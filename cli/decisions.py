"""免申即享 decisions: ``onceonly decisions run|list|explain|export|verify|rules``.

Example::

    onceonly decisions rules                         # the rule files, validated
    onceonly decisions run                           # the benefits flow, once (flows/benefits.py)
    onceonly decisions list --rule gaoling-jintie
    onceonly decisions explain gaoling-jintie-3f9a2c1e0b7d
    onceonly decisions export gaoling-jintie-3f9a2c1e0b7d -o decision.note
    onceonly decisions verify decision.note          # offline, with this home's verifier keys

Subjects are masked in everything printed. An exported bundle carries the subject only with
``--with-subject`` (the citizen's own copy: the file is written 600).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="免申即享: benefit decisions made from shared data.")


@app.command("rules")
def rules_command() -> None:
    """Validate and list the benefit rules (ONCEONLY_BENEFIT_RULES_DIR)."""
    from onceonly.settings import Settings
    from sharing.benefit_rules import load_rules

    settings = Settings()
    for rule in load_rules(settings.benefit_rules_dir, settings.contracts_dir):
        typer.echo(f"{rule.id}  {rule.version}  {rule.name}  {rule.department}")
        for fact in rule.facts:
            words = "，".join(rule.describe(c) for c in fact.conditions) or "有效"
            typer.echo(f"    {fact.name}（{fact.certificate_type}，{'/'.join(fact.status)}）：{words}")


@app.command("run")
def run_command(
    day: Annotated[
        str | None, typer.Option(help="Evaluate as of this day (YYYY-MM-DD); default today in Beijing.")
    ] = None,
) -> None:
    """Run the benefits flow once: evaluate every rule, record new grants and reversals."""
    from flows.benefits import benefits
    from flows.server import temporary_server
    from onceonly.privacy import scrub_text
    from onceonly.settings import Settings

    settings = Settings()
    with temporary_server():
        state = benefits(settings=settings, day=day, return_state=True)
    ok = state.is_completed()
    typer.secho(scrub_text(state.message or state.name or ""), fg=None if ok else "red", err=not ok)
    raise typer.Exit(0 if ok else 1)


@app.command("list")
def list_command(
    rule: Annotated[str | None, typer.Option(help="Only the decisions of this rule id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """Decisions, newest first (subjects masked)."""
    from catalog import Catalog
    from onceonly.settings import Settings
    from sharing.benefit_decisions import RESULT_NAMES, list_decisions

    catalog = Catalog.connect(Settings().catalog_url, create=False)
    try:
        with catalog.read() as conn:
            rows = list_decisions(conn, rule, limit=limit)
    finally:
        catalog.dispose()
    if not rows:
        typer.echo("no decision yet" + (f" of rule {rule}" if rule else ""))
        return
    for r in rows:
        state = f"  已被 {r.reversed_by} 撤销" if r.reversed_by else ""
        state += f"  撤销 {r.reverses}" if r.reverses else ""
        typer.echo(
            f"{r.decision_id}  {r.rule_id}@{r.rule_version}  {RESULT_NAMES[r.result]}  {r.subject_masked}  "
            f"{r.decided_on.isoformat()}  leaf {r.leaf_index}{state}"
        )


@app.command("explain")
def explain_command(decision: Annotated[str, typer.Argument(metavar="ID", help="A decision id.")]) -> None:
    """Why a decision was made: the rule, each fact with its certificate id and state, the subject masked."""
    from catalog import Catalog
    from onceonly.settings import Settings
    from sharing.benefit_decisions import explain, explain_text

    catalog = Catalog.connect(Settings().catalog_url, create=False)
    try:
        with catalog.read() as conn:
            typer.echo(explain_text(explain(conn, decision)))
    finally:
        catalog.dispose()


@app.command("export")
def export_command(
    decision: Annotated[str, typer.Argument(metavar="ID", help="A decision id.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the bundle.")],
    with_subject: Annotated[
        bool, typer.Option(help="Include the subject's ID and salt (the citizen's own copy; personal data).")
    ] = False,
) -> None:
    """Write the decision's bundle: its log entry, inclusion proof and signed checkpoint, signed."""
    from catalog import Catalog
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from evidence.merkle import tree_hash
    from onceonly.files import write_atomic
    from onceonly.settings import Settings
    from sharing.benefit_bundle import export_decision

    settings = Settings()
    key = open_key_store(settings).load(settings.log_origin)
    log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            bundle = export_decision(conn, log, decision, with_subject=with_subject)
    finally:
        catalog.dispose()
    write_atomic(output, bundle, mode=0o600 if with_subject else 0o644)
    typer.echo(f"wrote {output} (verify offline: onceonly decisions verify {output})")


@app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(metavar="FILE", help="A decision bundle (decisions export).")],
    trusted_key: Annotated[
        list[str] | None,
        typer.Option("--trusted-key", help="The district's verifier key (vkey); default: this home's keys."),
    ] = None,
) -> None:
    """Check a decision bundle offline: checkpoint signature, inclusion proof, bundle signature."""
    from cli.offline import checked, trusted_verifiers
    from onceonly.errors import ConfigurationError
    from sharing.benefit_bundle import verify_decision

    try:
        text = bundle.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the decision bundle {bundle}: {exc}") from exc
    report = checked(lambda: verify_decision(text, trusted_verifiers(trusted_key)))
    typer.secho(f"VALID: {report.summary}", fg="green")


__all__ = ["app"]

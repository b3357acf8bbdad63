"""The counter: ``onceonly stations add|list|revoke``, ``onceonly serve`` and ``onceonly who-used``.

Example::

    onceonly stations add --name 杨村街道便民服务中心 --township 120114001000   # prints the credential once
    onceonly serve --port 8080                                   # the stations' HTTP service
    onceonly who-used --subject 120114199003071234               # every use of this person's data
    onceonly verify-slip slip.txt --trusted-key "$(cat var/keys/*.vkey)"   # a 核验单, offline

A station's credential is printed once and stored only as its SHA-256; a station is scoped to
its township and, with ``--matter`` (repeatable), to those matters or 一件事 bundles.
``who-used`` lists each use and refusal the log records for the subject, each checked: the
entry's commitment opens to this subject, and the entry is in the tree of the newest signed
checkpoint (an inclusion proof), so an altered or forged entry shows as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()
stations_app = typer.Typer(no_args_is_help=True, help="Service stations and their credentials.")
app.add_typer(stations_app, name="stations")


@stations_app.command("add")
def stations_add(
    name: Annotated[str, typer.Option(help="The station's name (e.g. 杨村街道便民服务中心).")],
    township: Annotated[str, typer.Option(help="12-digit code of its township (contracts/regions).")],
    matter: Annotated[
        list[str] | None,
        typer.Option("--matter", help="A matter or 一件事 bundle it may ask for (repeat; default all)."),
    ] = None,
) -> None:
    """Register a station; print its credential (shown once, stored only as a hash)."""
    from catalog import Catalog
    from onceonly.settings import Settings
    from sharing.matters import load_matters
    from sharing.stations import add_station

    settings = Settings()
    if matter:
        catalogue = load_matters(settings.matters_file)
        for code in matter:
            catalogue.asked(code)  # unknown codes refused before anything is written
    with Catalog.connect(settings.catalog_url, create=False).begin() as conn:
        station, token = add_station(conn, name, township, district=settings.district_code, matters=matter)
    scope = ", ".join(station.matters) if station.matters else "every matter"
    typer.echo(
        f"station {station.station_id} ({station.name}, township {station.township}; {scope})", err=True
    )
    typer.echo("its credential, shown this once (give it to the station; only its hash is kept):", err=True)
    typer.echo(token)


@stations_app.command("list")
def stations_list() -> None:
    """Stations, their townships, scopes and whether their credential is revoked."""
    from catalog import Catalog
    from cli.console import console, table
    from onceonly.settings import Settings
    from sharing.stations import list_stations

    settings = Settings()
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        rows = list_stations(conn)
    out = table("station", "name", "township", "matters", "created", "revoked")
    for s in rows:
        out.add_row(
            s.station_id,
            s.name,
            s.township,
            ", ".join(s.matters) if s.matters else "all",
            f"{s.created_at:%Y-%m-%d %H:%M}",
            f"{s.revoked_at:%Y-%m-%d %H:%M}" if s.revoked_at else "",
        )
    console().print(out)


@stations_app.command("revoke")
def stations_revoke(station_id: Annotated[str, typer.Argument(help="The station's id.")]) -> None:
    """Revoke a station's credential: every request with it is refused from now on."""
    from catalog import Catalog
    from onceonly.settings import Settings
    from sharing.stations import revoke_station

    settings = Settings()
    with Catalog.connect(settings.catalog_url, create=False).begin() as conn:
        station = revoke_station(conn, station_id)
    typer.echo(
        f"station {station.station_id} ({station.name}) revoked at {station.revoked_at:%Y-%m-%d %H:%M}"
    )


citizens_app = typer.Typer(
    no_args_is_help=True, help="Citizens' own credentials (who used my data, consent)."
)
app.add_typer(citizens_app, name="citizens")


@citizens_app.command("enrol")
def citizens_enrol(
    subject: Annotated[
        str, typer.Option(help="The citizen's ID number (or a business's USCC), checked in person.")
    ],
) -> None:
    """Give a citizen their own credential (shown once, stored hashed; enrolling again replaces it)."""
    from catalog import Catalog
    from onceonly.privacy import mask_citizen_id
    from onceonly.settings import Settings
    from sharing.citizens import enrol

    settings = Settings()
    with Catalog.connect(settings.catalog_url, create=False).begin() as conn:
        citizen, token = enrol(conn, subject)
    typer.echo(f"citizen {citizen.citizen_id} ({mask_citizen_id(citizen.subject_id)})", err=True)
    typer.echo(
        "their credential, shown this once (for /api/citizen/uses and /api/citizen/consents):", err=True
    )
    typer.echo(token)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes answering on the port (each verifies the log at start and keeps its own "
            "view; their log writers take turns).",
        ),
    ] = 1,
) -> None:
    """Run the stations' service: the counter page at /, skip-check over HTTP (OpenAPI: /openapi.json)."""
    import uvicorn

    from onceonly.settings import Settings
    from sharing.service import serve_app

    typer.echo(f"OnceOnly counter on http://{host}:{port} (page: /, OpenAPI: /openapi.json)", err=True)
    if workers > 1:  # uvicorn starts each process, which builds its own app from the environment
        # What a process needs to start, checked here once: a configuration error, a missing
        # catalog or a key that does not open is reported by this command, not by each process.
        from catalog import Catalog
        from evidence.keys import open_key_store

        settings = Settings()
        Catalog.connect(settings.catalog_url, create=False).dispose()
        open_key_store(settings).load(settings.log_origin)
        from sharing.workers import reuse_port_available, serve_processes

        if reuse_port_available():  # a socket each: the kernel spreads the connections
            raise typer.Exit(serve_processes(host, port, workers))
        uvicorn.run(
            "sharing.service:serve_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
        return
    # One process: its log writer's transactions in a process of their own (sharing.logwriter).
    uvicorn.run(serve_app(appender=True), host=host, port=port, log_level="warning")


@app.command("who-used")
def who_used(
    subject: Annotated[str, typer.Option(help="The citizen's ID number (or a business's USCC).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Every use (and refused request) of this subject's data the log records, each proven."""
    from catalog import Catalog
    from evidence.keys import log_verifiers
    from onceonly.privacy import mask_citizen_id
    from onceonly.settings import Settings
    from sharing.uses import uses_of

    settings = Settings()
    verifiers = log_verifiers(settings)
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        report = uses_of(conn, subject, verifiers)
    shown = mask_citizen_id(report.subject) or ""
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        typer.secho(
            f"{shown}: {len(report.uses)} use(s) of their data, checked against the checkpoint of size "
            f"{report.checkpoint_size}",
            bold=True,
        )
        for u in report.uses:
            mark = "✔" if u.proven else "✘"
            what = u.entry.get("material") or u.entry.get("reason") or ""
            when = u.entry.get("used_at") or u.entry.get("refused_at") or u.entry.get("granted_at") or ""
            typer.echo(
                f"  {mark} leaf {u.leaf_index} {u.kind}: {when} township {u.entry.get('township')} "
                f"station {u.entry.get('station') or '-'} matter {u.entry.get('matter')} {what} "
                f"purpose {u.entry.get('purpose') or '-'} case {u.entry.get('case_number') or '-'}"
                + ("" if u.proven else f" — {u.problem}")
            )
        for problem in report.hidden:  # the list may be incomplete: nobody's is proven whole
            typer.secho(f"  ✘ {problem}", fg="red")
    if not report.proven:
        raise typer.Exit(1)


@app.command("verify-slip")
def verify_slip_command(
    slip: Annotated[
        Path, typer.Argument(metavar="SLIP", help="A verification slip (核验单) the service issued.")
    ],
    trusted_key: Annotated[
        list[str] | None,
        typer.Option("--trusted-key", help="The district's verifier key (vkey); default: this home's keys."),
    ] = None,
) -> None:
    """Check a verification slip offline: its signature, its checkpoint, and each logged use."""
    from cli.offline import checked, trusted_verifiers
    from onceonly.errors import ConfigurationError
    from sharing.slip import slip_digest, verify_slip

    try:
        text = slip.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the slip {slip}: {exc}") from exc
    report = checked(lambda: verify_slip(text, trusted_verifiers(trusted_key)))
    typer.secho(f"VALID: {report.summary} (sha256 {slip_digest(text)[:16]}…)", fg="green")


__all__ = ["app", "citizens_app", "stations_app"]

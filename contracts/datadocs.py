"""Great Expectations Data Docs of a connector's validations, built into a local site.

Example::

    docs = DataDocs(settings.datadocs_dir, base_url=settings.datadocs_url, retention_days=90)
    url = docs.publish(compiled, tallies, run_name="run-1f2e…", batch="gongan-household")
    # file:///…/var/datadocs/validations/household@1/0/0/run-1f2e…/<time>/gongan-household.html

One page per connector per run, not per batch: the page holds the suite's expectations with the
rows checked and failed summed over every batch the connector validated in the run, and the
masked examples (never the values GX saw: those may be citizen ID numbers). The page names its
data asset: the dataset (contract id) and the connector the rows came from.

Every run's page stays until it is ``retention_days`` old: the flow links each page from a
Prefect artifact, so a page must outlive later runs. GX's site index builder deletes every page
whose validation result is not in the context's results store, and an ephemeral context's store
is in memory, so each run used to delete the pages of the runs before it. The results are kept
on disk instead (``<site>/.results``, masked examples only, as on the pages), so the index lists
every kept run, and pages and results past the retention are deleted here, together.

The pages work offline: GX's templates load Bootstrap, jQuery, Font Awesome, Vega and the like
from public CDNs (and its logo from a GX server, with the context id). Those exact files are
shipped in ``contracts/datadocs_assets`` (see its README), copied into ``<site>/vendor`` and each
written page's links rewritten to them; anything else a page would fetch from the network is
dropped.

The GX 1.x calls: an ephemeral context with a ``ValidationResultsStore`` on a
``TupleFilesystemStoreBackend`` (``context.add_store``) and a ``SiteBuilder`` site
(``context.add_data_docs_site``), the result stored under a ``ValidationResultIdentifier``, then
``context.build_data_docs`` and ``context.get_docs_sites_urls`` for that identifier. Building a
page costs about 0.1 s with the site index (measured by ``bench/contracts.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from contracts.compiler import CompiledContract
from contracts.validate import RuleTally
from onceonly.errors import ContractError
from onceonly.files import write_atomic

SITE = "onceonly"
RESULTS_STORE = "onceonly_validation_results"
SUITES_STORE = "onceonly_suites"
RETENTION_DAYS = 90
#: Pages the index lists, newest first: building the index reads each one's result (about
#: 4 ms apiece, on every publish). Older pages stay, linked from their runs' artifacts, until
#: the retention deletes them.
INDEX_RUNS = 50
ASSETS = Path(__file__).with_name("datadocs_assets")
_RUN_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"  # GX's RunIdentifier.to_tuple(): the folder of a run's pages

_FILTER_CONTROL = "https://unpkg.com/bootstrap-table@"
#: Each URL GX's templates load (GX 1.x, ``render/view/templates``) → the shipped file.
VENDORED = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap@4.3.1/dist/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap@4.3.1/dist/js/bootstrap.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.js"
    ),
    f"{_FILTER_CONTROL}1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    f"{_FILTER_CONTROL}1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css"
    ),
    f"{_FILTER_CONTROL}1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker@1.9.0/dist/css/bootstrap-datepicker.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker@1.9.0/dist/js/bootstrap-datepicker.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free@6.6.0/css/all.min.css"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery@3.7.1/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js@1.12.9/dist/umd/popper.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/vega@5": "vega@5.33.1/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite@5.23.0/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed@6.29.0/build/vega-embed.min.js",
}
# GX's logos, fetched from its server with the time and the context id: the copies GX ships.
_GX_IMAGES = re.compile(
    r"""https://great-expectations-web-assets\.s3[\w.-]*\.amazonaws\.com/([\w.-]+)(?:\?[^"')\s]*)?"""
)
_GX_IMAGE_COPIES = {"logo-long.png": "logo-long.png", "full_logo_dark.png": "logo-long.png"}
# GX's links to its static folder count one folder per suite-name part too few ("a.b" → 4).
_GX_STATIC = re.compile(r"""((?:src|href)\s*=\s*["'])(?:\./|(?:\.\./)+)static/""")
# What a page would fetch: script and image sources, stylesheet links, CSS url().
_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_REMOTE_ATTRIBUTE = re.compile(r"""\s(?:src|href)\s*=\s*["']\s*(?:https?:)?//""", re.IGNORECASE)
_PINNING = re.compile(r"""\s(?:integrity|crossorigin)\s*=\s*["'][^"']*["']""", re.IGNORECASE)
_REMOTE_CSS_URL = re.compile(r"""url\(\s*["']?(?:https?:)?//[^)]*\)""", re.IGNORECASE)

logger = logging.getLogger(__name__)


class DataDocs:
    def __init__(
        self, site_dir: Path, *, base_url: str | None = None, retention_days: int = RETENTION_DAYS
    ) -> None:
        if retention_days < 1:
            raise ContractError(f"Data Docs retention must be at least 1 day, not {retention_days}")
        self.site_dir = site_dir.resolve()
        self.results_dir = self.site_dir / ".results"
        self.suites_dir = self.site_dir / ".suites"
        self.base_url = base_url.rstrip("/") if base_url else None
        self.retention = dt.timedelta(days=retention_days)
        self._lock = threading.Lock()
        self._context: Any = None
        self._assets_copied = False

    def _gx(self) -> Any:
        if self._context is None:
            import great_expectations as gx

            context = gx.get_context(mode="ephemeral")
            context.add_store(
                RESULTS_STORE,
                {
                    "class_name": "ValidationResultsStore",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(self.results_dir),
                    },
                },
            )
            context.validation_results_store_name = RESULTS_STORE
            # The suites too: each page links its suite's page, which the index builder deletes
            # when the suite is not in the store (an in-memory store forgets it per process).
            context.add_store(
                SUITES_STORE,
                {
                    "class_name": "ExpectationsStore",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(self.suites_dir),
                    },
                },
            )
            context.expectations_store_name = SUITES_STORE
            context.add_data_docs_site(
                SITE,
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(self.site_dir),
                    },
                    "site_index_builder": {
                        "class_name": "DefaultSiteIndexBuilder",
                        "validation_results_limit": INDEX_RUNS,
                    },
                },
            )
            self._context = context
        return self._context

    def publish(
        self,
        compiled: CompiledContract,
        tallies: Mapping[str, RuleTally],
        *,
        run_name: str,
        batch: str,
        run_time: dt.datetime | None = None,
    ) -> str:
        """Build the page of this validation (and the index); return its URL."""
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        with self._lock:
            context = self._gx()
            self._copy_assets()
            now = dt.datetime.now(dt.UTC)
            self.expire(now)
            run_id = RunIdentifier(run_name=run_name, run_time=run_time or now)
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=compiled.ref),
                run_id=run_id,
                batch_identifier=batch,
            )
            suite = key.expectation_suite_identifier
            built: list[Any] = [key]
            suite_page = self.site_dir / "expectations" / Path(*compiled.ref.split(".")).with_suffix(".html")
            if not context.expectations_store.has_key(suite):
                context.expectations_store.add(suite, compiled.build_suite())
            if not suite_page.is_file():
                built.append(suite)
            context.validation_results_store.set(key, _suite_result(compiled, tallies, run_id, batch))
            context.build_data_docs(site_names=[SITE], resource_identifiers=built)
            urls = context.get_docs_sites_urls(resource_identifier=key, site_name=SITE)
            url = next((u["site_url"] for u in urls if u.get("site_url")), None)
            if url is None:
                raise ContractError(
                    f"Data Docs for {batch} ({compiled.ref}) were not written under {self.site_dir}"
                )
            self._localise(Path(unquote(urlparse(url).path)))
            self._localise(self.site_dir / "index.html")
            if suite in built:
                self._localise(suite_page)
        return self._public(url)

    def expire(self, now: dt.datetime | None = None) -> list[Path]:
        """Delete the pages and results of runs older than the retention; return the pages deleted."""
        cutoff = (now or dt.datetime.now(dt.UTC)) - self.retention
        pages = self.site_dir / "validations"
        deleted = []
        for root, suffix in ((pages, ".html"), (self.results_dir, ".json")):
            for path in _files(root, suffix):
                ran = _run_time(path)
                if ran is not None and ran < cutoff:
                    path.unlink(missing_ok=True)
                    if suffix == ".html":
                        deleted.append(path)
            _remove_empty_folders(root)
        return deleted

    def _copy_assets(self) -> None:
        """Copy the shipped assets into the site (once per process; a changed file is replaced)."""
        if self._assets_copied:
            return
        target = self.site_dir / "vendor"
        for source in sorted(p for p in ASSETS.rglob("*") if p.is_file()):
            copy = target / source.relative_to(ASSETS)
            data = source.read_bytes()
            if not copy.is_file() or copy.read_bytes() != data:
                write_atomic(copy, data)
        self._assets_copied = True

    def _localise(self, page: Path) -> None:
        """Rewrite a written page so that it loads nothing from the network."""
        if not page.is_file():
            return
        html = page.read_text(encoding="utf-8")
        localised = localise_html(html, self._relative_root(page))
        if localised != html:
            write_atomic(page, localised)

    def _relative_root(self, page: Path) -> str:
        return "../" * (len(page.relative_to(self.site_dir).parts) - 1)

    def _public(self, url: str) -> str:
        local = self.site_dir.as_uri()
        if self.base_url and url.startswith(local):
            return self.base_url + url[len(local) :]
        return url


def localise_html(html: str, root: str) -> str:
    """``html`` with every CDN asset GX references pointed at ``<root>vendor/…``, GX's logos at
    its shipped copies, and anything else fetched from the network dropped.

    ``root`` is the relative path from the page to the site's folder (``"../../"``); GX's own
    links to its static folder are pointed there too (it counts the folders wrong). The SRI
    ``integrity``/``crossorigin`` pins go with the CDN: a ``crossorigin`` request for a file
    beside a ``file://`` page is refused by browsers (the shipped files are the pinned ones).
    """
    for url, shipped in VENDORED.items():
        html = html.replace(f'"{url}"', f'"{root}vendor/{shipped}"')
    html = _GX_STATIC.sub(lambda m: f"{m.group(1)}{root}static/", html)
    html = _GX_IMAGES.sub(
        lambda m: f"{root}static/images/{_GX_IMAGE_COPIES.get(m.group(1), 'logo-long.png')}", html
    )

    def local_tag(match: re.Match[str]) -> str:
        tag = match.group(0)
        if _REMOTE_ATTRIBUTE.search(tag):  # an asset this version of GX added: not shipped
            logger.warning("Data Docs: dropped what a page would load from the network: %s", tag[:200])
            return "<!-- dropped: loaded from the network (offline Data Docs) -->"
        return _PINNING.sub("", tag) if f"{root}vendor/" in tag else tag

    html = _TAG.sub(local_tag, html)
    return _REMOTE_CSS_URL.sub("none", html)


def _files(root: Path, suffix: str) -> Iterator[Path]:
    return (p for p in root.rglob(f"*{suffix}") if p.is_file()) if root.is_dir() else iter(())


def _run_time(path: Path) -> dt.datetime | None:
    """The run time of a page or result: its folder's name, as GX writes it (UTC)."""
    try:
        return dt.datetime.strptime(path.parent.name, _RUN_TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None  # not a run's file: left alone


def _remove_empty_folders(root: Path) -> None:
    if not root.is_dir():
        return
    for folder in sorted(
        (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        if not any(folder.iterdir()):
            folder.rmdir()


def _asset_name(compiled: CompiledContract, batch: str) -> str:
    return f"{compiled.contract.id} (from {batch})"


def _suite_result(
    compiled: CompiledContract, tallies: Mapping[str, RuleTally], run_id: Any, batch: str
) -> Any:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult

    from contracts.expectations import expectation_for

    results = []
    for rule in compiled.rules:
        tally = tallies.get(rule.name) or RuleTally(rule.name, rule.severity)
        percent = 100.0 * tally.failed / tally.checked if tally.checked else 0.0
        results.append(
            ExpectationValidationResult(
                success=tally.failed == 0,
                expectation_config=expectation_for(rule).configuration,
                result={
                    "element_count": tally.checked,
                    "unexpected_count": tally.failed,
                    "unexpected_percent": percent,
                    "unexpected_percent_nonmissing": percent,
                    "missing_count": 0,
                    "partial_unexpected_list": list(tally.examples),
                },
            )
        )
    passed = sum(1 for r in results if r.success)
    asset = _asset_name(compiled, batch)
    return ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=compiled.ref,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else 100.0,
        },
        meta={
            "run_id": run_id,
            "active_batch_definition": {
                "datasource_name": "onceonly",
                "data_connector_name": batch,
                "data_asset_name": asset,
                "batch_identifiers": {},
            },
            "batch_markers": {},
            # The page header reads the asset's name here ("Data asset: None" without it).
            "batch_spec": {"data_asset_name": asset},
            "validation_time": run_id.run_time.strftime("%Y%m%dT%H%M%S.%fZ"),
        },
    )


__all__ = ["ASSETS", "INDEX_RUNS", "RETENTION_DAYS", "VENDORED", "DataDocs", "localise_html"]

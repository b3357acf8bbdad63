"""Data Docs pages: every run's page kept for the retention, readable offline, naming its dataset."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from contracts.compiler import compile_contract
from contracts.datadocs import ASSETS, RETENTION_DAYS, VENDORED, DataDocs, localise_html
from contracts.model import contract_by_id
from contracts.validate import RuleTally
from onceonly.errors import ContractError
from onceonly.settings import Settings

HOUSEHOLD = compile_contract(contract_by_id(Settings().contracts_dir, "household"))
TALLIES = {
    "township_code.region_code": RuleTally("township_code.region_code", "error", 10, 2, ("120114999000",)),
    "person_id.gb11643_citizen_id": RuleTally(
        "person_id.gb11643_citizen_id", "error", 10, 1, ("120114********1234",)
    ),
}
NOW = dt.datetime.now(dt.UTC)
_LOADS = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_REFERENCE = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*["']?([^"')\s]+)""", re.IGNORECASE)


def _page(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def _loaded(page: Path) -> list[str]:
    """What a browser fetches to show ``page``: scripts, stylesheets, icons, images, CSS url()."""
    html = page.read_text(encoding="utf-8")
    refs = [m.group(1) for tag in _LOADS.findall(html) for m in _REFERENCE.finditer(tag)]
    return refs + _CSS_URL.findall(html)


def _assert_offline(page: Path) -> None:
    refs = _loaded(page)
    assert refs, page
    remote = [r for r in refs if re.match(r"(?:https?:)?//", r)]
    assert remote == [], f"{page.name} loads from the network: {remote}"
    missing = [r for r in refs if not (page.parent / unquote(r.split("?")[0])).is_file()]
    assert missing == [], f"{page.name} references files the site lacks: {missing}"
    # the fonts the shipped Font Awesome stylesheet loads
    css = page.parent / next(r for r in refs if r.endswith("all.min.css"))
    fonts = re.findall(r"url\((\.\./webfonts/[\w.-]+\.woff2)\)", css.read_text(encoding="utf-8"))
    assert fonts and all((css.parent / f).is_file() for f in fonts)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datadocs") / "site"


def test_every_runs_page_is_kept_and_the_index_lists_them(site: Path) -> None:
    """Each flow run builds its pages in a new process: an earlier run's page must survive it."""
    first = DataDocs(site).publish(HOUSEHOLD, TALLIES, run_name="run-1", batch="gongan-household")
    # the next run: another process, so another DataDocs (and GX context)
    second = DataDocs(site).publish(HOUSEHOLD, TALLIES, run_name="run-2", batch="gongan-household")
    third = DataDocs(site).publish(HOUSEHOLD, {}, run_name="run-2", batch="gongan-other")

    for url in (first, second, third):
        assert _page(url).is_file(), url
    index = (site / "index.html").read_text(encoding="utf-8")
    for url in (first, second, third):
        assert str(_page(url).relative_to(site)).replace("@", "%40") in index


def test_a_page_loads_nothing_from_the_network_and_names_its_dataset(site: Path) -> None:
    page = _page(DataDocs(site).publish(HOUSEHOLD, TALLIES, run_name="run-3", batch="gongan-household"))
    html = page.read_text(encoding="utf-8")
    assert "Data asset: household (from gongan-household)" in html
    assert "Data asset: None" not in html
    assert "region_code" in html and "120114********1234" in html
    for shown in (page, site / "index.html", site / "expectations" / "household@1" / "0" / "0.html"):
        _assert_offline(shown)
    # the suite link on the page leads to the suite's page
    suite = re.search(r'href="([^"]*expectations/household@1/0/0\.html)"', html)
    assert suite and (page.parent / suite.group(1)).is_file()
    # the CDN's subresource-integrity pins are of the very files shipped
    for match in re.finditer(r'integrity="(sha384-[^"]+)"', _gx_templates()):
        url = re.search(r'src="([^"]+)"[^>]*$', _gx_templates()[: match.start()])
        assert url and url.group(1) in VENDORED
        digest = hashlib.sha384((ASSETS / VENDORED[url.group(1)]).read_bytes()).digest()
        assert match.group(1) == "sha384-" + base64.b64encode(digest).decode()


def test_every_asset_the_installed_gx_loads_is_shipped() -> None:
    """A GX upgrade that loads a new CDN file fails here: ship it and list it in VENDORED."""
    urls = set(re.findall(r"""(?:src|href)="(https://[^"]+)\"""", _gx_templates()))
    assets = {u for u in urls if not re.match(r"https://(?:docs\.)?greatexpectations\.io", u)}
    assert assets and assets <= set(VENDORED), sorted(assets - set(VENDORED))
    assert all((ASSETS / shipped).is_file() for shipped in VENDORED.values())


def test_an_unknown_remote_asset_is_dropped_not_loaded() -> None:
    html = (
        '<script src="https://cdn.example.org/new.js"></script>'
        '<link rel="stylesheet" href="//cdn.example.org/new.css">'
        '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1&x=2">'
        '<style>a { background: url("https://cdn.example.org/x.png") }</style>'
        '<a href="https://greatexpectations.io">a link stays a link</a>'
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js" integrity="sha384-x"'
        ' crossorigin="anonymous">'
    )
    out = localise_html(html, "../")
    assert "example.org" not in out and "amazonaws" not in out
    assert '<img src="../static/images/logo-long.png">' in out
    assert '<script src="../vendor/jquery@3.7.1/dist/jquery.min.js">' in out  # pins dropped with the CDN
    assert 'href="https://greatexpectations.io"' in out


def test_pages_older_than_the_retention_are_deleted_with_their_results(tmp_path: Path) -> None:
    site = tmp_path / "site"
    old = _page(
        DataDocs(site).publish(
            HOUSEHOLD,
            TALLIES,
            run_name="run-old",
            batch="gongan-household",
            run_time=NOW - dt.timedelta(days=31),
        )
    )
    kept = _page(
        DataDocs(site).publish(
            HOUSEHOLD,
            TALLIES,
            run_name="run-kept",
            batch="gongan-household",
            run_time=NOW - dt.timedelta(days=29),
        )
    )
    assert old.is_file() and kept.is_file()
    assert len(list((site / ".results").rglob("*.json"))) == 2

    docs = DataDocs(site, retention_days=30)
    new = _page(docs.publish(HOUSEHOLD, TALLIES, run_name="run-new", batch="gongan-household"))

    assert not old.exists() and not old.parent.exists(), "the run's folder goes with its page"
    assert kept.is_file() and new.is_file()
    results = sorted(p.parent.parent.name for p in (site / ".results").rglob("*.json"))
    assert results == ["run-kept", "run-new"]
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "run-old" not in index and "run-kept" in index
    assert set(docs.expire(NOW + dt.timedelta(days=60))) == {kept, new}
    assert not list((site / "validations").rglob("*")) and not list((site / ".results").rglob("*"))
    with pytest.raises(ContractError, match="at least 1 day"):
        DataDocs(site, retention_days=0)
    assert Settings().datadocs_retention_days == RETENTION_DAYS == 90


def _gx_templates() -> str:
    import great_expectations

    folder = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.j2")))

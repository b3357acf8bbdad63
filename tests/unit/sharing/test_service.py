"""`onceonly serve`, `stations` and `who-used` as a station and a citizen use them: deny by default,
purpose and case number required, another township refused, every use and refusal in the log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from counter_home import MINE, OTHER, serving, station
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from catalog import Catalog, log_leaves, use_subjects
from cli.main import app as cli
from evidence.keys import log_verifiers
from onceonly.settings import Settings
from sharing.service import create_app
from sharing.uses import uses_of


@pytest.fixture
def client(people: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as client:
        yield client


def ask(client: TestClient, token: str | None, **body: Any) -> httpx.Response:
    request = {
        "matter": "pension-enrolment",
        "purpose": "城乡居民养老保险参保",
        "case_number": "WQ-2026-0001",
    }
    request.update(body)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(
        "/api/skip-check", json={k: v for k, v in request.items() if v is not None}, headers=headers
    )


def logged(kind: str) -> list[dict[str, Any]]:
    catalog = Catalog.connect(Settings().catalog_url, create=False)
    with catalog.read() as conn:
        rows = conn.execute(sa.select(log_leaves.c.entry).where(log_leaves.c.kind == kind)).scalars().all()
    catalog.dispose()
    return [json.loads(r) for r in rows]


def test_everything_but_health_needs_a_station_credential(client: TestClient, people: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "/api/skip-check" in client.get("/openapi.json").json()["paths"]
    assert client.get("/api/matters").status_code == 401
    for token in (None, "oos_stnope_forged", "Basic abc", "x" * 5000):
        answer = ask(client, token, subject_id=people["mine"])
        assert answer.status_code == 401 and "凭证" in answer.json()["detail"]
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert logged("use") == [] and logged("refusal") == []
    token = station()
    matters = client.get("/api/matters", headers={"Authorization": f"Bearer {token}"}).json()
    assert len(matters["matters"]) >= 15 and {b["code"] for b in matters["bundles"]} >= {"newborn"}


def test_a_resident_of_the_stations_township_is_answered_and_the_use_logged(
    client: TestClient, people: dict[str, str]
) -> None:
    token = station()
    answer = ask(client, token, subject_id=people["mine"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["subject"] == people["mine"][:6] + "********" + people["mine"][-4:]
    assert people["mine"] not in answer.text
    household = {m["material"]: m for m in body["materials"]}["居民户口簿"]
    assert household["verdict"] == "可免交" and household["skippable"]
    assert household["bundle_url"] == f"/api/certificates/{household['certificate_id']}/bundle"
    (use,) = logged("use")
    assert use["station"].startswith("st") and use["township"] == MINE
    assert (use["purpose"], use["case_number"]) == ("城乡居民养老保险参保", "WQ-2026-0001")
    assert people["mine"] not in json.dumps(use)  # committed, never named
    settings = Settings()
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        report = uses_of(conn, people["mine"], log_verifiers(settings))
    assert [(u.kind, u.proven) for u in report.uses] == [("use", True)]
    assert report.uses[0].entry["case_number"] == "WQ-2026-0001"


def test_the_answer_is_what_the_openapi_document_says_with_the_logged_state_and_validity(
    client: TestClient, people: dict[str, str]
) -> None:
    import jsonschema

    document = client.get("/openapi.json").json()
    documented = document["paths"]["/api/skip-check"]["post"]["responses"]["200"]["content"]
    schema = {**documented["application/json"]["schema"], "components": document["components"]}
    body = ask(client, station(), subject_id=people["mine"]).json()
    jsonschema.Draft202012Validator(schema).validate(body)
    materials = {m["material"]: m for m in body["materials"]}
    household, card = materials["居民户口簿"], materials["居民身份证"]
    assert household["status"] == "有效" and household["valid_from"] and "valid_to" in household
    assert (card["status"], card["valid_from"], card["valid_to"], "bundle_url" in card) == (
        None,
        None,
        None,
        False,
    )
    with pytest.raises(jsonschema.ValidationError):  # the document is a real constraint
        jsonschema.Draft202012Validator(schema).validate(
            {**body, "materials": [{**household, "verdict": "ok"}]}
        )


@pytest.mark.parametrize(
    ("body", "status", "detail", "reason"),
    [
        ({"purpose": None}, 422, "请填写用证事由", "no purpose"),
        ({"purpose": "  "}, 422, "请填写用证事由", "no purpose"),
        ({"case_number": None}, 422, "请填写受理编号", "no case number"),
        ({"matter": "no-such-matter"}, 404, "未知事项", "unknown matter"),
    ],
)
def test_a_request_without_purpose_or_case_or_for_an_unknown_matter_is_refused_and_logged(
    client: TestClient, people: dict[str, str], body: dict[str, Any], status: int, detail: str, reason: str
) -> None:
    answer = ask(client, station(), subject_id=people["mine"], **body)
    assert answer.status_code == status and detail in answer.json()["detail"], answer.text
    (refusal,) = logged("refusal")
    assert refusal["reason"] == reason and logged("use") == []


def test_a_subject_of_another_township_needs_consent_and_nothing_of_them_is_shown(
    client: TestClient, people: dict[str, str]
) -> None:
    answer = ask(client, station(), subject_id=people["other"])
    assert answer.status_code == 403 and answer.json()["detail"].startswith("需本人授权"), answer.text
    assert people["other"] not in answer.text and "居民户口簿" not in answer.text
    (refusal,) = logged("refusal")
    assert refusal["reason"] == "subject of another township" and refusal["township"] == MINE
    # The refused attempt is theirs to see.
    settings = Settings()
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        report = uses_of(conn, people["other"], log_verifiers(settings))
    assert [(u.kind, u.proven) for u in report.uses] == [("refusal", True)]
    # The other township's own station is answered.
    assert ask(client, station(OTHER), subject_id=people["other"]).status_code == 200


def test_a_station_asks_only_for_its_matters(client: TestClient, people: dict[str, str]) -> None:
    token = station(matters=["newborn"])
    answer = ask(client, token, subject_id=people["mine"])
    assert answer.status_code == 403 and "本站未获授权办理该事项" in answer.json()["detail"]
    assert logged("refusal")[0]["reason"] == "matter out of the station's scope"
    assert ask(client, token, subject_id=people["mine"], matter="newborn").status_code == 200


@pytest.mark.parametrize(
    "typed",
    [
        "120114199003070119",  # a wrong check character
        "1' OR '1'='1",  # SQL-looking
        "１２０１１４１９９００３０７０１１Ｘ",  # full-width look-alikes
        "12011419900307011X\u200b",  # a zero-width space
    ],
)
def test_a_malformed_id_is_a_clear_400_that_echoes_nothing(
    client: TestClient, people: dict[str, str], typed: str
) -> None:
    answer = ask(client, station(), subject_id=typed)
    assert answer.status_code == 400, answer.text
    assert "身份证号码格式或校验位不正确" in answer.json()["detail"] and typed not in answer.text
    assert logged("refusal")[0]["reason"] == "invalid subject identifier"
    assert "subject_commitment" not in logged("refusal")[0]


def test_an_overlong_field_is_refused_by_the_schema(client: TestClient, people: dict[str, str]) -> None:
    assert ask(client, station(), subject_id="1" * 65).status_code == 422
    assert ask(client, station(), subject_id=people["mine"], purpose="事" * 201).status_code == 422


def test_stations_on_the_command_line_and_a_revoked_credential(
    client: TestClient, people: dict[str, str]
) -> None:
    runner = CliRunner()
    added = runner.invoke(cli, ["stations", "add", "--name", "杨村", "--township", MINE])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("oos_st") and ask(client, token, subject_id=people["mine"]).status_code == 200
    listed = runner.invoke(cli, ["stations", "list"])
    station_id = token.split("_")[1]
    assert station_id in listed.output and token not in listed.output
    catalog = Catalog.connect(Settings().catalog_url, create=False)
    with catalog.read() as conn:
        assert token not in json.dumps(
            [list(r) for r in conn.execute(sa.text("SELECT * FROM stations"))], default=str
        )
    catalog.dispose()
    assert runner.invoke(cli, ["stations", "revoke", station_id]).exit_code == 0
    assert ask(client, token, subject_id=people["mine"]).status_code == 401
    bad = runner.invoke(cli, ["stations", "add", "--name", "x", "--township", "999999999999"])
    assert bad.exit_code != 0 and "not a township of district" in str(bad.exception)
    bad = runner.invoke(cli, ["stations", "add", "--name", "x", "--township", MINE, "--matter", "nope"])
    assert bad.exit_code != 0 and "no matter or 一件事 bundle 'nope'" in str(bad.exception)


def test_who_used_proves_each_use_and_an_altered_entry_fails(
    client: TestClient, people: dict[str, str]
) -> None:
    assert ask(client, station(), subject_id=people["mine"]).status_code == 200
    runner = CliRunner()
    shown = runner.invoke(cli, ["who-used", "--subject", people["mine"]])
    assert shown.exit_code == 0 and "✔" in shown.output and "WQ-2026-0001" in shown.output, shown.output
    assert people["mine"] not in shown.output
    catalog = Catalog.connect(Settings().catalog_url, create=False)
    with catalog.begin() as conn:  # the station's purpose rewritten after the fact
        (leaf, entry) = conn.execute(
            sa.select(log_leaves.c.leaf_index, log_leaves.c.entry).where(log_leaves.c.kind == "use")
        ).one()
        forged = bytes(entry).replace("城乡居民养老保险参保".encode(), "其他".encode())
        conn.execute(sa.update(log_leaves).where(log_leaves.c.leaf_index == leaf).values(entry=forged))
    catalog.dispose()
    shown = runner.invoke(cli, ["who-used", "--subject", people["mine"], "--json"])
    assert shown.exit_code == 1
    (use,) = json.loads(shown.stdout)["uses"]
    assert not use["proven"] and "not the one the signed log holds" in use["problem"]


@pytest.mark.parametrize(
    "hidden", ["the opening", "the leaf and its opening", "its field renamed and its opening"]
)
def test_a_use_hidden_from_the_list_makes_who_used_fail_for_everyone(
    client: TestClient, people: dict[str, str], hidden: str
) -> None:
    token = station()
    for case in ("WQ-2026-0001", "WQ-2026-0002"):
        assert ask(client, token, subject_id=people["mine"], case_number=case).status_code == 200
    assert ask(client, token, subject_id=people["other"]).status_code == 403  # a refusal: someone else's
    runner = CliRunner()
    assert runner.invoke(cli, ["who-used", "--subject", people["other"]]).exit_code == 0
    catalog = Catalog.connect(Settings().catalog_url, create=False)
    with catalog.begin() as conn:  # the first use of "mine" taken out of their list
        first = (
            conn.execute(
                sa.select(use_subjects.c.leaf_index)
                .where(use_subjects.c.subject_id == people["mine"])
                .order_by(use_subjects.c.leaf_index)
            )
            .scalars()
            .first()
        )
        conn.execute(sa.delete(use_subjects).where(use_subjects.c.leaf_index == first))
        if hidden == "the leaf and its opening":
            conn.execute(sa.delete(log_leaves).where(log_leaves.c.leaf_index == first))
        if hidden == "its field renamed and its opening":  # so that no scan of the bytes finds it
            entry = conn.execute(
                sa.select(log_leaves.c.entry).where(log_leaves.c.leaf_index == first)
            ).scalar_one()
            renamed = bytes(entry).replace(b'"subject_commitment":', b'"subject_commitmenT":')
            conn.execute(sa.update(log_leaves).where(log_leaves.c.leaf_index == first).values(entry=renamed))
    catalog.dispose()
    shown = runner.invoke(cli, ["who-used", "--subject", people["mine"]])
    assert shown.exit_code == 1 and "WQ-2026-0001" not in shown.output and "WQ-2026-0002" in shown.output
    expected = f"(leaves {first})" if hidden == "the opening" else "the log does not verify"
    assert expected in shown.output, shown.output
    # nobody's list is whole any more: another citizen's fails too, and the JSON says so
    assert runner.invoke(cli, ["who-used", "--subject", people["other"]]).exit_code == 1
    listed = json.loads(runner.invoke(cli, ["who-used", "--subject", people["other"], "--json"]).stdout)
    assert listed["complete"] is False and any(expected in h for h in listed["hidden"])
    if hidden == "the opening":  # their own entries still prove (a leaf gone breaks the proofs)
        assert all(u["proven"] for u in listed["uses"]), listed


def test_onceonly_serve_answers_over_http(people: dict[str, str], home: Path) -> None:
    token = station()
    with serving() as url:
        answer = httpx.post(
            f"{url}/api/skip-check",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "subject_id": people["mine"],
                "matter": "pension-enrolment",
                "purpose": "参保登记",
                "case_number": "WQ-1",
            },
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    assert {m["material"]: m["verdict"] for m in answer.json()["materials"]}["居民户口簿"] == "可免交"


def test_a_bundle_is_downloaded_for_a_case_and_verifies_offline(
    client: TestClient, people: dict[str, str], tmp_path: Path
) -> None:
    token = station()
    headers = {"Authorization": f"Bearer {token}"}
    answer = ask(client, token, subject_id=people["mine"]).json()
    url = {m["material"]: m for m in answer["materials"]}["居民户口簿"]["bundle_url"]
    assert client.get(url, headers=headers).status_code == 422  # no purpose, no case number
    # Only for the case the answer was for, and once.
    other_case = client.get(url, headers=headers, params={"purpose": "参保登记", "case_number": "WQ-9"})
    assert other_case.status_code == 403 and "未在本站本受理编号的核验结果中" in other_case.json()["detail"]
    params = {"purpose": "参保登记", "case_number": "WQ-2026-0001"}
    got = client.get(url, headers=headers, params=params)
    assert got.status_code == 200, got.text
    again = client.get(url, headers=headers, params=params)
    assert again.status_code == 403 and "已为本受理编号下载过" in again.json()["detail"]
    assert got.headers["Content-Disposition"].startswith("attachment;")
    path = tmp_path / "bundle.json"
    path.write_text(got.text, encoding="utf-8")
    vkey = next((Settings().keys_dir).glob("*.vkey")).read_text(encoding="utf-8").strip()
    verified = CliRunner().invoke(cli, ["verify", str(path), "--trusted-key", vkey])
    assert verified.exit_code == 0 and "VALID" in verified.output, verified.output
    downloads = [u for u in logged("use") if u["matter"] == "certificate-bundle"]
    assert len(downloads) == 1 and downloads[0]["case_number"] == "WQ-2026-0001"
    # Another township's certificate (no answer of this station for it): refused; unknown: 404.
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    with catalog.read() as conn:
        theirs = conn.execute(
            sa.text("SELECT cert_id FROM certificates WHERE holder_id = :h"), {"h": people["other"]}
        ).scalar_one()
    catalog.dispose()
    refused = client.get(f"/api/certificates/{theirs}/bundle", headers=headers, params=params)
    assert refused.status_code == 403 and people["other"] not in refused.text
    assert client.get("/api/certificates/1.2.3/bundle", headers=headers, params=params).status_code == 404
    assert [r["reason"] for r in logged("refusal")] == [
        "no purpose",
        "certificate not answered for this station and case",
        "bundle already downloaded for this case",
        "certificate not answered for this station and case",
        "unknown certificate",
    ]


def test_the_answer_carries_a_signed_slip_that_verifies_offline_and_fails_when_changed(
    client: TestClient, people: dict[str, str], tmp_path: Path
) -> None:
    from sharing.slip import verify_slip

    answer = ask(client, station(), subject_id=people["mine"]).json()
    slip = answer["slip"]
    assert people["mine"] not in slip
    # The QR code printed on it, drawn on request: the case number and the slip's digest.
    assert answer["slip_qr_url"].startswith("/api/slip-qr?")
    qr = client.get(answer["slip_qr_url"], headers={"Authorization": f"Bearer {station()}"})
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.lstrip().startswith("<") and "<path" in qr.text
    assert client.get(answer["slip_qr_url"]).status_code == 401
    bad_digest = client.get(
        "/api/slip-qr?case_number=X&sha256=zz", headers={"Authorization": f"Bearer {station()}"}
    )
    assert bad_digest.status_code == 422
    verifiers = log_verifiers(Settings())
    report = verify_slip(slip, verifiers)
    assert report.uses == 1 and report.slip["case_number"] == "WQ-2026-0001"
    assert report.slip["materials"][0]["verdict"] in {"可免交", "需提交材料"}
    path = tmp_path / "slip.txt"
    path.write_text(slip, encoding="utf-8")
    vkey = next((Settings().keys_dir).glob("*.vkey")).read_text(encoding="utf-8").strip()
    ok = CliRunner().invoke(cli, ["verify-slip", str(path), "--trusted-key", vkey])
    assert ok.exit_code == 0 and ok.output.startswith("VALID:"), ok.output
    # Any changed byte of the signed text, or another key: refused.
    path.write_text(slip.replace("WQ-2026-0001", "WQ-2026-0002", 1), encoding="utf-8")
    bad = CliRunner().invoke(cli, ["verify-slip", str(path), "--trusted-key", vkey])
    assert bad.exit_code == 1 and "INVALID: the slip is not signed" in bad.output
    from evidence.keys import SigningKey

    other = SigningKey.generate(Settings().log_origin)
    path.write_text(slip, encoding="utf-8")
    bad = CliRunner().invoke(cli, ["verify-slip", str(path), "--trusted-key", other.vkey])
    assert bad.exit_code == 1 and "INVALID" in bad.output


def citizen_token(subject: str) -> str:
    enrolled = CliRunner().invoke(cli, ["citizens", "enrol", "--subject", subject])
    assert enrolled.exit_code == 0, enrolled.output
    return enrolled.stdout.strip().splitlines()[-1]


def grant(client: TestClient, token: str, **body: Any) -> httpx.Response:
    request = {
        "township": MINE,
        "matter": "pension-enrolment",
        "purpose": "城乡居民养老保险参保",
        "minutes": 30,
    }
    request.update(body)
    return client.post("/api/citizen/consents", json=request, headers={"Authorization": f"Bearer {token}"})


def test_a_citizens_consent_lets_another_townships_station_ask_once(
    client: TestClient, people: dict[str, str]
) -> None:
    theirs = citizen_token(people["other"])
    granted = grant(client, theirs)
    assert granted.status_code == 200, granted.text
    code = granted.json()["code"]
    assert len(code) == 9 and code[4] == "-"
    token = station()  # of MINE: the citizen lives in OTHER
    answer = ask(client, token, subject_id=people["other"], consent_code=code.lower().replace("-", ""))
    assert answer.status_code == 200, answer.text
    assert {m["material"]: m["verdict"] for m in answer.json()["materials"]}["居民户口簿"] == "可免交"
    # The consent covers the bundles of that case, for that station, while it lasts.
    url = {m["material"]: m for m in answer.json()["materials"]}["居民户口簿"]["bundle_url"]
    params = {"purpose": "参保", "case_number": "WQ-2026-0001"}
    assert client.get(url, headers={"Authorization": f"Bearer {token}"}, params=params).status_code == 200
    assert client.get(url, headers={"Authorization": f"Bearer {station()}"}, params=params).status_code == 403
    # Replayed: refused, and said so.
    again = ask(client, token, subject_id=people["other"], consent_code=code)
    assert again.status_code == 403 and "已使用" in again.json()["detail"]
    # The consent, the use and the refusal are the citizen's to see, each proven.
    mine = client.get("/api/citizen/uses", headers={"Authorization": f"Bearer {theirs}"}).json()
    assert [(u["kind"], u["proven"]) for u in mine["uses"]] == [
        ("consent", True),
        ("use", True),  # the skip-check
        ("use", True),  # the bundle
        ("refusal", True),  # the other station's bundle
        ("refusal", True),  # the replay
    ]
    assert people["other"] not in json.dumps(mine)


@pytest.mark.parametrize(
    ("grant_body", "ask_body", "detail", "reason"),
    [
        ({}, {"consent_code": "ABCD-EFGH"}, "授权码无效", "consent code unknown or of another subject"),
        ({"township": OTHER}, {}, "不是授予本镇街", "consent code of another township"),
        (
            {"purpose": "其他用途"},
            {},
            "不适用于本事项或本用证事由",
            "consent code of another matter or purpose",
        ),
        (
            {"matter": "newborn"},
            {},
            "不适用于本事项或本用证事由",
            "consent code of another matter or purpose",
        ),
    ],
)
def test_a_forged_or_misused_consent_is_refused(
    client: TestClient,
    people: dict[str, str],
    grant_body: dict[str, Any],
    ask_body: dict[str, Any],
    detail: str,
    reason: str,
) -> None:
    code = grant(client, citizen_token(people["other"]), **grant_body).json()["code"]
    answer = ask(client, station(), subject_id=people["other"], **{"consent_code": code, **ask_body})
    assert answer.status_code == 403 and detail in answer.json()["detail"], answer.text
    assert logged("refusal")[-1]["reason"] == reason and logged("use") == []


def test_an_expired_consent_or_another_persons_is_refused(people: dict[str, str]) -> None:
    import datetime as dt

    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from sharing.citizens import ConsentRefused, enrol, grant_consent, use_consent

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    with catalog.begin() as conn:
        citizen, _ = enrol(conn, people["other"])
        consent = grant_consent(
            conn, log, citizen, township=MINE, matter="pension-enrolment", purpose="参保", minutes=1
        )
    request = {"township": MINE, "matter": "pension-enrolment", "purpose": "参保", "station_id": "st1"}
    later = consent.expires_at + dt.timedelta(seconds=1)
    with catalog.begin() as conn, pytest.raises(ConsentRefused, match="已过期"):
        use_consent(conn, consent.code, subject_id=people["other"], now=later, **request)
    with catalog.begin() as conn, pytest.raises(ConsentRefused, match="无效"):
        use_consent(conn, consent.code, subject_id=people["mine"], **request)
    with catalog.begin() as conn:
        assert use_consent(conn, consent.code, subject_id=people["other"], **request) == consent.leaf_index
    catalog.dispose()


def test_credentials_do_not_cross(client: TestClient, people: dict[str, str]) -> None:
    theirs = citizen_token(people["mine"])
    assert ask(client, theirs, subject_id=people["mine"]).status_code == 401
    assert (
        client.get("/api/citizen/uses", headers={"Authorization": f"Bearer {station()}"}).status_code == 401
    )
    assert client.get("/api/citizen/uses").status_code == 401
    assert grant(client, theirs, minutes=61).status_code == 422
    assert grant(client, theirs, township="999999999999").status_code == 422


def test_a_schema_refusal_echoes_nothing_and_is_logged(client: TestClient, people: dict[str, str]) -> None:
    token = station()
    headers = {"Authorization": f"Bearer {token}"}
    body = {"subject_id": people["mine"], "purpose": "参保", "case_number": "c"}  # no matter
    answer = client.post("/api/skip-check", json=body, headers=headers)
    assert answer.status_code == 422 and people["mine"] not in answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "matter"]
    (refusal,) = logged("refusal")
    assert refusal["reason"] == "request refused by the schema" and refusal["matter"] == "unknown"
    assert "subject_commitment" in refusal and people["mine"] not in json.dumps(refusal)
    # Without a station's credential, nothing is logged.
    assert client.post("/api/skip-check", json=body).status_code == 401  # no credential: before the schema
    assert len(logged("refusal")) == 1


def test_free_text_that_holds_an_id_is_never_logged_in_clear(
    client: TestClient, people: dict[str, str]
) -> None:
    token = station()
    unknown = ask(client, token, subject_id=people["mine"], matter=people["other"])
    assert unknown.status_code == 404 and people["other"] not in unknown.text
    answered = ask(client, token, subject_id=people["mine"], purpose=f"核对{people['other']}的材料")
    assert answered.status_code == 200 and people["other"] not in answered.text
    everything = json.dumps(logged("refusal") + logged("use"), ensure_ascii=False)
    assert people["other"] not in everything and people["other"][:6] + "********" in everything
    assert logged("refusal")[0]["matter"] == "unknown"


@pytest.mark.parametrize("inline", [True, False], ids=["on-the-loop", "thread-pool"])
def test_answered_on_the_loop_or_from_the_thread_pool_alike_the_view_following_its_own_appends(
    people: dict[str, str], inline: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a SQLite catalog the loop answers itself; another database is asked from the thread
    pool: the same answers, refusals and slips. The view follows the writer's own appends from
    the entries written — the slip's use entries are not read back from the catalog."""
    from evidence.view import LogView
    from sharing.service import Counter
    from sharing.slip import verify_slip

    counter = Counter(Settings())
    counter.inline = inline
    followed: list[bool] = []
    follow = LogView.follow_own

    def spy(view: LogView, first: int, entries: Any, note: str) -> bool:
        followed.append(follow(view, first, entries, note))
        return followed[-1]

    monkeypatch.setattr(LogView, "follow_own", spy)
    from sharing.logwriter import LogWriter

    took: list[bool] = []  # an appender's outcome already sent, taken before each answer reads
    take_ready = LogWriter.take_ready
    monkeypatch.setattr(LogWriter, "take_ready", lambda writer: took.append(True) or take_ready(writer))
    read_back: list[int] = []
    from sharing import slip as slip_module

    leaf_at = slip_module.leaf_at
    monkeypatch.setattr(slip_module, "leaf_at", lambda conn, i: read_back.append(i) or leaf_at(conn, i))
    token = station()
    with TestClient(create_app(counter=counter)) as client:
        answers = [ask(client, token, subject_id=people["mine"], case_number=f"WQ-{n}") for n in range(3)]
        refused = ask(client, token, subject_id=people["mine"], purpose=None)
        other = ask(client, token, subject_id=people["other"])
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert (refused.status_code, refused.json()["detail"]) == (422, "请填写用证事由")
    assert other.status_code == 403 and "需本人授权" in other.json()["detail"]
    verifiers = log_verifiers(Settings())
    for n, answer in enumerate(answers):
        report = verify_slip(answer.json()["slip"], verifiers)
        assert report.uses == 1 and report.slip["case_number"] == f"WQ-{n}"
    assert [u["case_number"] for u in logged("use")] == ["WQ-0", "WQ-1", "WQ-2"]
    assert [r["reason"] for r in logged("refusal")] == ["no purpose", "subject of another township"]
    assert followed and all(followed) and read_back == []
    assert (counter._loop_thread is not None) == inline  # answered on the loop, or in the pool
    assert len(took) == (5 if inline else 0)


def test_a_big_growth_of_the_log_is_followed_off_the_loop(
    people: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch issued while the service runs (here: uses logged by another process) is folded
    in the thread pool before the answer, not on the loop that every request shares."""
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog, record_use
    from sharing import service
    from sharing.service import Counter

    monkeypatch.setattr(service, "FOLLOW_ON_LOOP", 2)
    counter = Counter(Settings())
    off_the_loop: list[int] = []
    follow = counter._follow_log
    monkeypatch.setattr(counter, "_follow_log", lambda: off_the_loop.append(1) or follow())
    settings = Settings()
    other = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    catalog = Catalog.connect(settings.catalog_url, create=False)
    token = station()
    with TestClient(create_app(counter=counter)) as client:
        assert ask(client, token, subject_id=people["mine"], case_number="WQ-1").status_code == 200
        assert off_the_loop == []  # its own appends: followed from what it wrote
        for n in range(3):
            with catalog.begin() as conn:
                record_use(conn, other, matter="m", certificate_id=f"c{n}", township=MINE)
        assert ask(client, token, subject_id=people["mine"], case_number="WQ-2").status_code == 200
    catalog.dispose()
    assert off_the_loop == [1]


def test_two_counters_on_one_catalog_take_turns_and_each_slip_proves_its_uses(people: dict[str, str]) -> None:
    """Two services on one SQLite catalog (two processes of `onceonly serve --workers 2`, here
    two Counters): their writers take turns on the lock file; each view follows its own appends
    and reads the other's from the catalog; every slip verifies, no leaf is lost or doubled."""
    import threading

    from evidence.log import verify_log
    from sharing.service import Counter, SkipCheckRequest
    from sharing.slip import verify_slip

    token = station()
    counters = [Counter(Settings()), Counter(Settings())]
    read_from_catalog: list[int] = []
    for counter in counters:
        follow = counter.view._follow

        def spy(conn: Any, size: int, note: str, follow: Any = follow) -> None:
            read_from_catalog.append(size)
            follow(conn, size, note)

        counter.view._follow = spy  # type: ignore[method-assign]
    turns = counters[0].writer._turns
    assert turns is not None and turns.name == "catalog.db.writer-lock"
    answers: list[dict[str, Any]] = []

    def clerk(counter: Counter, n: int) -> None:
        request = SkipCheckRequest(
            subject_id=people["mine"], matter="pension-enrolment", purpose="参保登记", case_number=f"WQ-{n}"
        )
        answers.append(json.loads(counter.skip_check_for(f"Bearer {token}", request)))

    threads = [threading.Thread(target=clerk, args=(counters[n % 2], n)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for counter in counters:
        counter.close()
    assert len(answers) == 12
    assert read_from_catalog  # each view read the other's appends back, checked as always
    verifiers = log_verifiers(Settings())
    assert sorted(verify_slip(a["slip"], verifiers).slip["case_number"] for a in answers) == sorted(
        f"WQ-{n}" for n in range(12)
    )
    assert sorted(u["case_number"] for u in logged("use")) == sorted(f"WQ-{n}" for n in range(12))
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    with catalog.read() as conn:
        verify_log(conn, verifiers)
    catalog.dispose()
    assert oct((settings.home / "catalog.db.writer-lock").stat().st_mode & 0o777) == "0o600"


def test_onceonly_serve_with_two_workers_answers_over_http(people: dict[str, str], home: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sharing.slip import verify_slip

    token = station()
    with serving("--workers", "2") as url:

        def ask_over_http(n: int) -> httpx.Response:
            return httpx.post(
                f"{url}/api/skip-check",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "subject_id": people["mine"],
                    "matter": "pension-enrolment",
                    "purpose": "参保登记",
                    "case_number": f"WQ-{n}",
                },
                timeout=60,
            )

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask_over_http, range(16)))
    assert [a.status_code for a in answers] == [200] * 16, [a.text for a in answers if a.status_code != 200]
    verifiers = log_verifiers(Settings())
    assert {verify_slip(a.json()["slip"], verifiers).slip["case_number"] for a in answers} == {
        f"WQ-{n}" for n in range(16)
    }
    assert sorted(u["case_number"] for u in logged("use")) == sorted(f"WQ-{n}" for n in range(16))


def test_fastapis_own_telemetry_is_off(people: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Request paths hold certificate identifiers: nothing is exported, even when FastAPI's
    environment switch asks for it (FastAPI ≥ 0.150 instruments every app unless told not to)."""
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    app = create_app(Settings())
    native = getattr(app, "_native_telemetry", None)
    if native is None:  # a FastAPI before its telemetry: nothing to turn off
        return
    assert not native.enabled()
    assert app._telemetry["auto_configure"] is False
    app.state.counter.close()


def test_the_served_app_puts_what_it_built_to_start_out_of_the_collectors_reach(
    people: dict[str, str],
) -> None:
    import gc

    from sharing.service import serve_app

    before = gc.get_freeze_count()
    app = serve_app()
    try:
        assert gc.get_freeze_count() > before
        assert app.state.counter.view.size > 0  # the verified log is among what was frozen
    finally:
        gc.unfreeze()  # this test's process builds many apps
        app.state.counter.close()


def _without_volatile(body: dict[str, Any]) -> dict[str, Any]:
    """An answer less what differs between two askings (the slip, its digest and checkpoint)."""
    return {
        k: v for k, v in body.items() if k not in ("slip", "slip_sha256", "slip_qr_url", "checkpoint_size")
    }


def test_a_well_formed_skip_check_is_answered_below_fastapi_and_anything_else_as_before(
    client: TestClient, people: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sharing import service

    token = station()
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "subject_id": people["mine"],
        "matter": "pension-enrolment",
        "purpose": "参保",
        "case_number": "c1",
    }
    routed: list[str] = []
    counter = client.app.state.counter  # type: ignore[attr-defined]
    real = counter.skip_check_async

    async def spy(*args: Any) -> bytes:
        routed.append("counter")
        return await real(*args)

    monkeypatch.setattr(counter, "skip_check_async", spy)
    fastapi_route = service.SkipCheckRequest.model_validate_json
    calls: list[bytes] = []

    def counted(data: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(data)
        return fastapi_route(data, *args, **kwargs)

    monkeypatch.setattr(service.SkipCheckRequest, "model_validate_json", counted)
    lean = client.post(
        "/api/skip-check",
        content=json.dumps(body),
        headers={**headers, "Content-Type": "application/json; charset=utf-8"},
    )
    assert lean.status_code == 200 and lean.headers["content-type"] == "application/json"
    assert int(lean.headers["content-length"]) == len(lean.content)
    assert len(calls) == 1 and routed == ["counter"]  # read by the lean route
    stack = client.app.middleware_stack  # type: ignore[attr-defined]
    assert isinstance(stack, service._SkipCheckRoute)  # in front of every FastAPI layer
    behind: list[str] = []
    fastapi_stack = stack.app

    async def counted_stack(scope: Any, receive: Any, send: Any) -> None:
        behind.append(scope["path"])
        await fastapi_stack(scope, receive, send)

    monkeypatch.setattr(stack, "app", counted_stack)
    again = client.post(
        "/api/skip-check", content=json.dumps(body), headers={**headers, "Content-Type": "application/json"}
    )
    assert again.status_code == 200 and behind == []  # FastAPI's stack never saw it
    # The same request as FastAPI's route answers it (a JSON content type it parses itself).
    viafastapi = client.post(
        "/api/skip-check",
        content=json.dumps(body),
        headers={**headers, "Content-Type": "application/merge+json"},
    )
    assert viafastapi.status_code == 200 and len(calls) == 2 and routed == ["counter"] * 3
    assert behind == ["/api/skip-check"]
    assert _without_volatile(lean.json()) == _without_volatile(viafastapi.json())
    assert len(logged("use")) == 3
    # Refusals word the same either way: 401 with its header, 422 for a missing purpose.
    for content_type in ("application/json", "application/merge+json"):
        denied = client.post(
            "/api/skip-check", content=json.dumps(body), headers={"Content-Type": content_type}
        )
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"] == "Bearer"
        no_purpose = client.post(
            "/api/skip-check",
            content=json.dumps({**body, "purpose": " "}),
            headers={**headers, "Content-Type": content_type},
        )
        assert no_purpose.status_code == 422 and no_purpose.json() == {"detail": "请填写用证事由"}
    # A body the model refuses, or one that is not JSON: FastAPI's answer, the refusal logged.
    refusals = len(logged("refusal"))
    extra = client.post("/api/skip-check", json={**body, "surplus": 1}, headers=headers)
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "surplus"]
    broken = client.post(
        "/api/skip-check", content=b'{"subject_id": ', headers={**headers, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    assert len(logged("refusal")) == refusals + 2


def test_a_skip_check_body_in_several_messages_is_read_whole(people: dict[str, str]) -> None:
    asyncio.run(_several_messages(people))


async def _several_messages(people: dict[str, str]) -> None:
    from sharing.service import _SkipCheckRoute

    token = station()
    data = json.dumps(
        {"subject_id": people["mine"], "matter": "pension-enrolment", "purpose": "参保", "case_number": "c2"}
    ).encode()
    parts = [data[:7], data[7:30], data[30:]]
    messages = [{"type": "http.request", "body": p, "more_body": i < 2} for i, p in enumerate(parts)]
    sent: list[dict[str, Any]] = []
    passed: list[Any] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def behind(scope: Any, receive: Any, send: Any) -> None:
        passed.append(scope)

    class Answering:
        async def skip_check_async(self, authorization: str | None, request: Any) -> bytes:
            assert authorization == f"Bearer {token}" and request.case_number == "c2"
            return b'{"ok":true}'

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/skip-check",
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"authorization", b"Bearer second-is-ignored"),
            (b"content-type", b"application/json"),
        ],
    }
    await _SkipCheckRoute(behind, Answering())(scope, receive, send)  # type: ignore[arg-type]
    assert passed == [] and sent[0]["status"] == 200 and sent[1]["body"] == b'{"ok":true}'
    # The client gone before its body arrived: FastAPI's route gets what was read, then the rest.
    replayed: list[Any] = []

    async def reading(scope: Any, receive: Any, send: Any) -> None:
        replayed.extend([await receive(), await receive()])

    messages[:] = [{"type": "http.request", "body": data[:7], "more_body": True}, {"type": "http.disconnect"}]
    await _SkipCheckRoute(reading, Answering())(scope, receive, send)  # type: ignore[arg-type]
    assert [m["type"] for m in replayed] == ["http.request", "http.disconnect"]


def test_an_answer_on_the_loop_reads_in_one_transaction_and_asks_the_newest_checkpoint_once(
    people: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a SQLite catalog the loop reads the credential, the log's newest checkpoint and the
    answer in one read transaction (each one begun after a commit re-reads its pages), and asks
    for the newest checkpoint once: the view's reader is handed what was read."""
    import contextlib

    from evidence import view as view_module
    from sharing.service import Counter

    counter = Counter(Settings())
    transactions: list[int] = []
    read_kept = counter.catalog.read_kept

    @contextlib.contextmanager
    def counted() -> Any:
        transactions.append(1)
        with read_kept() as conn:
            yield conn

    monkeypatch.setattr(counter.catalog, "read_kept", counted)
    newest_asked: list[int] = []
    real = view_module._NEWEST

    class Counted:
        def first(self, conn: Any, **params: Any) -> Any:
            newest_asked.append(1)
            return real.first(conn, **params)

    monkeypatch.setattr(view_module, "_NEWEST", Counted())
    token = station()
    with TestClient(create_app(counter=counter)) as client:
        for n in range(3):
            answered = ask(client, token, subject_id=people["mine"], case_number=f"WQ-{n}")
            assert answered.status_code == 200 and answered.json()["materials"][0]["skippable"]
    assert len(transactions) == 3 and len(newest_asked) == 3

"""sharing.supervision without a server: the push document, its signature, the newest landed row
of each approval, the client's error translation (httpx.MockTransport), the token by name."""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from evidence.keys import SigningKey
from evidence.log import TransparencyLog
from lake.parquet import ParquetLake
from onceonly.errors import ConfigurationError, TerminalError, TransientError, VerificationFailed
from onceonly.settings import Settings
from sharing.supervision import (
    MAX_RESULT,
    PUSH_SCHEMA,
    SupervisorClient,
    SupervisorRefused,
    SupervisorUnavailable,
    clean_result,
    landed_approvals,
    open_push,
    push_digest,
    push_document,
    sign_push,
    supervisor_client,
)

ORIGIN = "test.example/wuqing/evidence"
APPROVAL = {
    "approval_id": "WQSP2026000001",
    "licence_no": "JY21201140000019",
    "matter": "食品经营许可",
    "decision_type": "准予许可",
    "applicant_name": "武清区德丰早点部",
    "applicant_uscc": "92120114MAW5MXFG6P",
    "legal_representative": "张睿成",
    "legal_representative_id": "120114197512124959",
    "business_address": "天津市武清区黄花店镇黄花店大街205号",
    "township_code": "120114112000",
    "business_form": "餐饮服务经营者",
    "business_items": "热食类食品制售",
    "decided_on": dt.date(2026, 11, 12),
    "valid_from": dt.date(2026, 11, 12),
    "valid_to": dt.date(2031, 11, 11),
    "approving_authority": "天津市武清区行政审批局",
    "supervising_authority": "天津市武清区市场监督管理局",
    "updated_at": "2026-11-12 16:29:00",
}


def test_the_push_masks_the_representative_and_carries_no_time_so_retries_sign_the_same_text() -> None:
    document = push_document(APPROVAL, "120114")
    assert document["schema"] == PUSH_SCHEMA and document["district"] == "120114"
    assert document["legal_representative"] == {"name": "张睿成", "id": "120114********4959"}
    assert document["decided_on"] == "2026-11-12" and "updated_at" not in document
    log = TransparencyLog(SigningKey.generate(ORIGIN), ORIGIN)
    first, again = sign_push(log, document), sign_push(log, push_document(dict(APPROVAL), "120114"))
    assert first.split("\n\n")[0] == again.split("\n\n")[0]
    assert "120114197512124959" not in first


def test_a_push_opens_with_the_districts_key_only_and_tampering_fails() -> None:
    log = TransparencyLog(SigningKey.generate(ORIGIN), ORIGIN)
    note = sign_push(log, push_document(APPROVAL, "120114"))
    assert open_push(note, [log.key.verifier])["approval_id"] == "WQSP2026000001"
    with pytest.raises(VerificationFailed):
        open_push(note, [SigningKey.generate(ORIGIN).verifier])
    with pytest.raises(VerificationFailed):
        open_push(note.replace("准予许可", "变更许可"), [log.key.verifier])
    other = log.key.sign_note('{"schema":"onceonly-slip/1"}\n')
    with pytest.raises(VerificationFailed, match="not a onceonly-supervision-push/1 push"):
        open_push(other, [log.key.verifier])


def test_landed_approvals_are_the_newest_row_of_each(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path / "lake")
    assert landed_approvals(lake, "approval") == []
    rows = [
        {**APPROVAL, "decision_type": "准予许可", "updated_at": "2026-11-12 16:29:00"},
        {**APPROVAL, "approval_id": "WQSP2026000002", "updated_at": "2026-11-13 09:00:00"},
    ]
    lake.write_accepted("approval", "b1", pa.Table.from_pylist(rows), "township_code")
    changed = [{**APPROVAL, "decision_type": "变更许可", "updated_at": "2026-11-20 10:00:00"}]
    lake.write_accepted("approval", "b2", pa.Table.from_pylist(changed), "township_code")
    found = landed_approvals(lake, "approval")
    assert [a["approval_id"] for a in found] == ["WQSP2026000001", "WQSP2026000002"]
    assert found[0]["decision_type"] == "变更许可"


def _client(handler: object, attempts: int = 3) -> SupervisorClient:
    return SupervisorClient(
        "http://supervisor.test/api/v1",
        "t0ken",
        attempts=attempts,
        backoff_seconds=0,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
    )


def test_transient_answers_are_retried_then_reported_transient() -> None:
    calls: list[httpx.Request] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(503, json={"error": "busy"})
        return httpx.Response(201, json={"case_id": "JG1", "duplicate": False})

    answer = _client(flaky).push("WQSP2026000001", "note\n")
    assert answer.case_id == "JG1" and len(calls) == 3
    assert all(c.headers["Idempotency-Key"] == "WQSP2026000001" for c in calls)
    assert calls[0].headers["Authorization"] == "Bearer t0ken"

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(
        SupervisorUnavailable, match=r"unreachable \(ConnectError\) \(gave up after 2 attempts\)"
    ) as e:
        _client(down, attempts=2).push("WQSP2026000001", "note\n")
    assert isinstance(e.value, TransientError)
    assert isinstance(pickle.loads(pickle.dumps(e.value)), SupervisorUnavailable)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(SupervisorUnavailable, match="no answer within"):
        _client(slow).receipts(0)


def test_refusals_are_terminal_with_their_status_and_not_retried() -> None:
    calls: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(422, json={"error": "签名无效，拒收"})

    with pytest.raises(SupervisorRefused, match="HTTP 422 签名无效") as e:
        _client(refuse).push("WQSP2026000001", "note\n")
    assert e.value.status == 422 and isinstance(e.value, TerminalError) and calls == [1]
    restored = pickle.loads(pickle.dumps(e.value))
    assert restored.status == 422 and str(restored) == str(e.value)


def test_receipts_are_parsed_with_aware_times() -> None:
    def receipts(request: httpx.Request) -> httpx.Response:
        assert request.url.params["after"] == "7"
        return httpx.Response(
            200,
            json={"receipts": [{"seq": 8, "receipt_id": "R8", "approval_id": "A", "case_id": "JG1",
                                "kind": "feedback", "at": "2026-11-20T08:00:00", "result": "符合要求"}]},
        )  # fmt: skip

    (receipt,) = _client(receipts).receipts(7)
    assert receipt.at == dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC) and receipt.result == "符合要求"


def test_the_token_is_resolved_by_its_name_in_the_supervision_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ONCEONLY_SECRET_SUPERVISION_TOKEN", "s3cret-value")
    client = supervisor_client(Settings(home=tmp_path))
    assert client.secret_values() == {"s3cret-value"}
    client.close()
    with pytest.raises(ConfigurationError, match="ONCEONLY_SECRET_SUPERVISION_<NAME>"):
        supervisor_client(Settings(home=tmp_path, supervision_token_secret="ONCEONLY_KEY_PASSPHRASE"))


def test_the_digest_recorded_is_of_the_note_body_so_a_corrected_approval_differs() -> None:
    log = TransparencyLog(SigningKey.generate(ORIGIN), ORIGIN)
    document = push_document(APPROVAL, "120114")
    note = sign_push(log, document)
    assert push_digest(document) == hashlib.sha256(note.split("\n\n", 1)[0].encode()).hexdigest()
    corrected = push_document({**APPROVAL, "business_address": "天津市武清区黄花店镇（更正）"}, "120114")
    assert push_digest(corrected) != push_digest(document)


def test_receipts_not_valid_come_with_their_problem_and_a_409_names_its_case() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(409, json={"error": "已立案，内容不同", "case_id": "JG00000007"})
        base = {
            "seq": 1,
            "receipt_id": "R1",
            "approval_id": "A",
            "case_id": "JG1",
            "at": "2026-11-20T08:00:00",
        }
        return httpx.Response(
            200,
            json={"receipts": [{**base, "kind": "read"}, {**base, "seq": 2, "kind": "deleted"},
                               {**base, "seq": 3, "kind": "read", "case_id": "J" * 65},
                               {**base, "seq": 4, "kind": "feedback", "at": "yesterday"},
                               {**base, "seq": 5, "kind": "feedback", "result": {"x": 1}}]},
        )  # fmt: skip

    client = _client(answer)
    good, kind, long_case, no_time, not_text = client.receipts(0)
    assert good.problem is None
    assert kind.problem is not None and "'deleted' is none of read, feedback" in kind.problem
    assert long_case.problem is not None and "64" in long_case.problem
    assert no_time.problem is not None and "ISO 8601" in no_time.problem
    assert not_text.problem == "result is not text"
    with pytest.raises(SupervisorRefused) as refused:
        client.push("A", "note\n")
    assert refused.value.status == 409 and refused.value.case_id == "JG00000007"


def test_the_result_kept_is_scrubbed_cut_and_printable() -> None:
    text = clean_result("负责人 120114197512124959，电话 13800000000。\x07" + "符合要求。" * 1000)
    assert text is not None and len(text) <= MAX_RESULT and text.endswith("…")
    assert "120114197512124959" not in text and "120114********4959" in text and "\x07" not in text
    assert clean_result(None) is None and clean_result("符合要求") == "符合要求"

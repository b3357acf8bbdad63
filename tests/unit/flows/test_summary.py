"""The run's report in words: what landed, and for each connector that did not, why and what to do."""

from __future__ import annotations

from flows.summary import ConnectorResult, RunSummary


def _summary(*connectors: ConnectorResult) -> RunSummary:
    return RunSummary(
        run_id="r-1",
        connectors=list(connectors),
        tree_size=1234,
        extracts=3,
        expired=2,
        vkey="k",
        home="/h",
        catalog="sqlite://",
        lake="/l",
        extracts_dir="/e",
        crashed_runs=["r-0"],
        recovered={"published": 1, "discarded": 0},
    )


def test_a_clean_run_says_so_with_its_counts() -> None:
    ok = ConnectorResult("gongan", "household", pulled=10, accepted=9, quarantined=1, certificates=9)
    report = _summary(ok).report()
    assert "**Every connector landed.**" in report
    assert (
        "10 rows pulled, 9 accepted, 1 quarantined; 9 certificates issued, 0 cancelled, 2 expired" in report
    )
    assert "1 of 1 connector(s) ok; transparency log size 1,234; 3 township extract(s) written" in report
    assert "runs found dead and taken over: r-0" in report and "1 committed batch(es) published" in report
    assert "What went wrong" not in report


def test_each_failure_gets_its_cause_and_what_to_do() -> None:
    report = _summary(
        ConnectorResult(
            "a", "household", status="breached", error="a: 40% broke", breached=True, cause="terminal"
        ),
        ConnectorResult("b", "household", status="failed", error="b: did not answer", cause="transient"),
        ConnectorResult("c", "licence", status="failed", error="c: wrong password", cause="terminal"),
        ConnectorResult("d", "birth", status="busy", error="d: held by run x", cause="transient"),
    ).report()
    assert "**4 of 4 connector(s) failed — a: a: 40% broke; b: b: did not answer;" in report
    sections = report.split("### ")[1:]
    assert [s.splitlines()[0] for s in sections] == [
        "a (household): breached",
        "b (household): failed",
        "c (licence): failed",
        "d (birth): busy",
    ]
    assert "onceonly quarantine report" in sections[0]
    assert "the next run resumes from the last landed batch" in sections[1]
    assert "onceonly connectors test c" in sections[2] and "someone must act" in sections[2]
    assert "another run holds this connector" in sections[3]


def test_the_time_line_says_where_the_run_spent_its_time() -> None:
    a = ConnectorResult("a", "household", stage_seconds={"pull": 1.0, "validate": 2.0, "land": 3.04})
    b = ConnectorResult("b", "marriage", stage_seconds={"pull": 0.5, "land": 1.0})
    summary = _summary(a, b)
    assert summary.time_line() == ""  # a run stored before stages were measured
    summary.stage_seconds = {
        "recover": 0.2,
        "connectors": 9.0,
        "status": 0.3,
        "extracts": 4.0,
        "witnesses": 0.0,
    }
    assert summary.time_line() == (
        "Time: connectors 9.0 s (pull 1.5 s · validate 2.0 s · land 4.0 s); "
        "recover 0.2 s · status 0.3 s · extracts 4.0 s · witnesses 0.0 s"
    )
    stored = RunSummary.from_json(summary.to_json())
    assert stored.connectors[0].stage_seconds == {"pull": 1.0, "validate": 2.0, "land": 3.04}
    assert stored.time_line() == summary.time_line()


def test_a_timed_block_adds_its_wall_time_even_when_it_raises() -> None:
    result = ConnectorResult("a", "household")
    with result.timed("pull"):
        pass
    try:
        with result.timed("pull"):
            raise ValueError("the source broke")
    except ValueError:
        pass
    assert set(result.stage_seconds) == {"pull"} and result.stage_seconds["pull"] >= 0

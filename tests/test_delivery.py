"""Alert e-mails from the outbox to a real SMTP server (aiosmtpd on 127.0.0.1) and to .eml files.

Everything is real: the outbox is SQLite, the server is aiosmtpd speaking
SMTP over loopback (tests/smtp.py), and smtplib is the client. Most tests
build their messages directly with ``build_message`` on a few rows; two
full pipeline runs on the bundled King County sample (one with the file
transport, one over SMTP) check what real digests look like and who gets
which tracts. Both runs reuse one champion, a real LightGBM model trained
once per module on two origins with synthetic labels (as test_explain.py
does) and registered in a temporary models folder, so that no test waits for
the backtest and training of a first ``risk run`` (about a minute on two
cores): the tests here are about delivery, not about the model.
"""

from __future__ import annotations

import re
import struct
import threading
import zlib
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BUNDLED_CONFIG, ROOT
from mailparts import html_of, text_of
from pydantic import ValidationError
from smtp import Received, SmtpServer
from sqlalchemy import Engine

from risk.alerts.digests import RunOutputs, compose
from risk.alerts.messages import Outgoing, TractRow, build_message
from risk.alerts.rules import Alert, decide, idempotency_key, week_of
from risk.core.settings import (
    AlertSettings,
    DeliverySettings,
    Recipient,
    Settings,
    SmtpSettings,
    load_settings,
)
from risk.core.store import engine_for, latest_decisions, run_scores
from risk.delivery.outbox import outbox_rows, queue, send_queued
from risk.features.build import build_features
from risk.features.dictionary import feature_names
from risk.model.gbm import TrainingRows, train
from risk.model.registry import Registry
from risk.service.pipeline import RunResult, latest_outputs, run
from risk.sources import Sources

# shap 0.51 sets colormap extremes in a way matplotlib 3.11 plans to deprecate; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:shap")

AS_OF = date(2019, 3, 1)
WEEK = week_of(AS_OF)
SENDER = "Displacement alerts <alerts@example.org>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GEOID = re.compile(r"/tracts/(\d{11})")


# ---------------------------------------------------------------- helpers


def _png(rgb: tuple[int, int, int]) -> bytes:
    """A valid 1x1 PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes([0, *rgb]))) + \
        chunk(b"IEND", b"")


MAP_PNG = _png((200, 30, 40))


def _row(geoid: str, name: str | None = None, waterfall: bool = True) -> TractRow:
    return TractRow(geoid, name or f"Census tract {geoid[-6:]}", "31%", "high", "new", "newly in the high tier",
                    ["Eviction filings per renter household are high", "Renter share is high"],
                    f"http://127.0.0.1:8000/tracts/{geoid}", f"drivers-{geoid}" if waterfall else None)


ROWS = [_row("53033030802"), _row("53033029700"), _row("53033031100", waterfall=False)]
WATERFALLS = {"53033030802": _png((10, 20, 30)), "53033029700": _png((40, 50, 60))}


def _message(settings: Settings, recipient: Recipient, *, kind: str = "digest", rows: list[TractRow] | None = None,
             notes: list[str] | None = None, pictures: bool = True) -> EmailMessage:
    rows = ROWS if rows is None else rows
    return build_message(settings, recipient, kind, AS_OF, rows, MAP_PNG if pictures else None,
                         WATERFALLS if pictures else {}, notes or [])


def _outgoing(settings: Settings, email: str, name: str = "Planner", *, kind: str = "digest",
              **kwargs: object) -> Outgoing:
    person = Recipient(name=name, email=email)
    msg = _message(settings, person, kind=kind, **kwargs)  # type: ignore[arg-type]
    return Outgoing(idempotency_key(email, kind, WEEK), WEEK, kind, email, msg)


def _smtp(server: SmtpServer, **kwargs: object) -> DeliverySettings:
    smtp = {"host": server.host, "port": server.port, "timeout_s": 5.0}
    smtp.update({k.removeprefix("smtp_"): v for k, v in kwargs.items() if k.startswith("smtp_")})
    rest = {k: v for k, v in kwargs.items() if not k.startswith("smtp_")}
    return DeliverySettings(**{"transport": "smtp", "from": SENDER, "backoff_s": 0, "max_attempts": 3,
                               "smtp": SmtpSettings(**smtp), **rest})  # type: ignore[arg-type]


def _rows(engine: Engine) -> dict[str, dict]:
    return {r["recipient"]: r for r in outbox_rows(engine)}


def _listed(msg: EmailMessage) -> set[str]:
    """GEOIDs a message lists, from the review links of the text part (and the same in the HTML)."""
    text, html = set(GEOID.findall(text_of(msg))), set(GEOID.findall(html_of(msg)))
    assert text == html
    return text


def _assert_multipart_with_pictures(msg: EmailMessage) -> None:
    """multipart/alternative(text/plain, multipart/related(text/html, image/png...)), every cid matched."""
    assert msg.get_content_type() == "multipart/alternative"
    assert not msg.defects
    plain, related = msg.get_payload()
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html, *images = related.get_payload()
    assert html.get_content_type() == "text/html"
    assert images and all(p.get_content_type() == "image/png" for p in images)
    assert all(not p.defects for p in msg.walk())
    ids = [p["Content-ID"] for p in images]
    assert all(i and i.startswith("<") and i.endswith(">") for i in ids)
    assert len(set(ids)) == len(ids)
    for p in images:
        assert p.get_content()[:8] == PNG_SIGNATURE
    referenced = set(re.findall(r"""src=["']cid:([^"']+)["']""", html.get_content()))
    assert referenced == {i[1:-1] for i in ids}  # every cid: has its picture, every picture is shown


# ---------------------------------------------------------------- fixtures


def _absolute(node: object) -> object:
    """Input paths of the bundled config (``data/...``) made absolute, so the config works from a temp folder."""
    if isinstance(node, dict):
        return {k: _absolute(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolute(v) for v in node]
    if isinstance(node, str) and node.startswith("data/"):
        return str(ROOT / node)
    return node


def _config(folder: Path, models: Path | None = None, **sections: object) -> Path:
    """A copy of the bundled config in ``folder``, with whole sections replaced.

    Every state path is spelled out and absolute: a path left to its default is not resolved against the
    config's folder (see test_default_paths_are_resolved_against_the_config_folder).
    """
    data = _absolute(yaml.safe_load(BUNDLED_CONFIG.read_text(encoding="utf-8")))
    assert isinstance(data, dict)
    data["model"] = {**data.get("model", {}), "bootstrap": 50, "null_simulations": 5}
    data["paths"] = {"database": str(folder / "state" / "risk.sqlite"), "models": str(models or folder / "models"),
                     "reports": str(folder / "reports"), "features": str(folder / "state" / "features")}
    data.update(sections)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return engine_for(tmp_path / "risk.sqlite")


@pytest.fixture
def server() -> SmtpServer:
    smtp = SmtpServer().start()
    yield smtp  # type: ignore[misc]
    smtp.stop()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, bundled_sources: Sources,
               bundled_settings: Settings) -> Path:
    """A registry whose champion is a real LightGBM model trained in about a second on synthetic labels."""
    names = feature_names(bundled_settings.features.spatial_lags)
    rows = []
    for year in (2012, 2014):
        X = build_features(bundled_sources, date(year, 6, 1), bundled_settings.features)[names]
        score = X.rank(pct=True).mean(axis=1)
        rows.append(TrainingRows(year, X, (score > score.quantile(0.8)).astype(int)))
    model = train(rows, names, bundled_settings.model.seed)
    folder = tmp_path_factory.mktemp("models")
    registry = Registry(folder)
    registry.register(model, {"outcome": bundled_settings.model.outcome, "features": names}, "delivery-test-champion")
    registry.promote("delivery-test-champion")
    return folder


@dataclass(frozen=True)
class PipelineRun:
    settings: Settings
    result: RunResult
    engine: Engine
    alerts: list[Alert]
    received: list[Received]


def _pipeline(folder: Path, models: Path, delivery: dict, recipients: list[dict]) -> PipelineRun:
    config = _config(folder, models, delivery={"outbox_dir": str(folder / "outbox"), **delivery},
                     alerts={"recipients": recipients})
    settings = load_settings(config)
    result = run(settings, as_of=AS_OF)
    engine = engine_for(settings.paths.database)
    assert result.run_id is not None
    alerts = decide(run_scores(engine, result.run_id), pd.DataFrame(columns=["probability", "percentile"]),
                    latest_decisions(engine), settings.alerts)
    return PipelineRun(settings, result, engine, alerts, [])


@pytest.fixture(scope="module")
def file_run(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> PipelineRun:
    """`risk run` with the file transport: a digest for everyone, an immediate message for the county desk."""
    return _pipeline(tmp_path_factory.mktemp("file-run"), models_dir,
                     {"transport": "file", "from": SENDER},
                     [{"name": "Housing team", "email": "housing@example.org", "areas": ["all"]},
                      {"name": "County desk", "email": "county@example.org", "areas": ["53033"], "immediate": True}])


@pytest.fixture(scope="module")
def pipeline_server() -> SmtpServer:
    smtp = SmtpServer().start()
    yield smtp  # type: ignore[misc]
    smtp.stop()


@pytest.fixture(scope="module")
def quiet(file_run: PipelineRun) -> list[str]:
    """GEOIDs that do not alert this week."""
    scores = run_scores(file_run.engine, file_run.result.run_id)  # type: ignore[arg-type]
    out = sorted(set(scores.index) - {a.geoid for a in file_run.alerts})
    assert len(out) >= 2
    return out


@pytest.fixture(scope="module")
def watched(file_run: PipelineRun, quiet: list[str]) -> tuple[str, str, str]:
    """Three GEOIDs for one recipient: two that alert and one that does not."""
    assert len(file_run.alerts) >= 3
    return file_run.alerts[0].geoid, file_run.alerts[-1].geoid, quiet[0]


@pytest.fixture(scope="module")
def smtp_run(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, pipeline_server: SmtpServer,
             watched: tuple[str, str, str], quiet: list[str]) -> PipelineRun:
    """`risk run` over SMTP for recipients of the whole region, a county, three GEOIDs and a quiet tract."""
    done = _pipeline(
        tmp_path_factory.mktemp("smtp-run"), models_dir,
        {"transport": "smtp", "from": SENDER, "backoff_s": 0, "max_attempts": 2,
         "smtp": {"host": pipeline_server.host, "port": pipeline_server.port, "security": "none", "timeout_s": 5}},
        [{"name": "Housing team", "email": "housing@example.org", "areas": ["all"]},
         {"name": "County desk", "email": "county@example.org", "areas": ["53033"], "immediate": True},
         {"name": "Block watch", "email": "watch@example.org", "areas": list(watched)},
         {"name": "Quiet street", "email": "quiet@example.org", "areas": [quiet[1]]},
         {"name": "Weekly reader", "email": "weekly@example.org", "areas": [quiet[1]], "empty_digest": True}])
    return PipelineRun(done.settings, done.result, done.engine, done.alerts, list(pipeline_server.messages))


# ---------------------------------------------------------------- the message itself


def test_a_digest_is_multipart_alternative_with_html_and_its_pictures_related(bundled_settings: Settings) -> None:
    msg = _message(bundled_settings, Recipient(name="Planner", email="planner@example.org"))
    _assert_multipart_with_pictures(msg)
    related = msg.get_payload()[1]
    assert {p["Content-ID"] for p in related.get_payload()[1:]} == {"<map>", "<drivers-53033030802>",
                                                                    "<drivers-53033029700>"}
    assert _listed(msg) == {r.geoid for r in ROWS}


def test_pictures_are_inline_parts_not_attachments(bundled_settings: Settings) -> None:
    # RFC 2183/2387: a picture the HTML shows through cid: is disposed inline; with `attachment` (what
    # EmailMessage.add_related gives as soon as a filename is set) mail clients list the map and every
    # waterfall as separate attachments besides showing them in the body
    msg = _message(bundled_settings, Recipient(name="Planner", email="planner@example.org"))
    pictures = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(pictures) == 3
    assert [p.get_content_disposition() for p in pictures] == ["inline"] * 3


def test_a_digest_without_pictures_references_no_picture(bundled_settings: Settings) -> None:
    msg = _message(bundled_settings, Recipient(name="Planner", email="planner@example.org"), pictures=False,
                   rows=[_row("53033030802", waterfall=False)])
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    assert "cid:" not in html_of(msg)


@pytest.mark.slow
def test_real_digests_arrive_as_multipart_with_every_picture_referenced(smtp_run: PipelineRun) -> None:
    with_rows = [m for m in smtp_run.received if _listed(m.message)]
    assert len(with_rows) == 4  # housing, county digest and immediate, block watch
    for received in with_rows:
        _assert_multipart_with_pictures(received.message)
    housing = next(m.message for m in with_rows if m.rcpt_tos == ("housing@example.org",))
    ids = {p["Content-ID"] for p in housing.walk() if p.get_content_type() == "image/png"}
    top = [a.geoid for a in smtp_run.alerts[:smtp_run.settings.alerts.top_waterfalls]]
    assert ids == {"<map>", *(f"<drivers-{g}>" for g in top)}


def test_messages_carry_the_date_and_ids_rfc_5322_requires(bundled_settings: Settings, engine: Engine,
                                                          server: SmtpServer) -> None:
    queue(engine, None, [_outgoing(bundled_settings, "planner@example.org")])
    send_queued(engine, _smtp(server))
    msg = server.messages[0].message
    assert msg["From"] == SENDER and msg["Message-ID"] == _rows(engine)["planner@example.org"]["message_id"]
    assert msg["Date"] is not None, "no Date header: RFC 5322 3.6 requires the origination date"
    assert parsedate_to_datetime(str(msg["Date"])).tzinfo is not None


# ---------------------------------------------------------------- who gets what


@pytest.mark.slow
def test_each_recipient_gets_only_the_tracts_of_its_areas(smtp_run: PipelineRun, file_run: PipelineRun,
                                                          watched: tuple[str, str, str]) -> None:
    assert [a.geoid for a in smtp_run.alerts] == [a.geoid for a in file_run.alerts]  # same model, same week
    everything = {a.geoid for a in smtp_run.alerts}
    urgent = {a.geoid for a in smtp_run.alerts if "new_high" in a.reasons}
    got: dict[tuple[str, str], set[str]] = {}
    for m in smtp_run.received:
        (to,) = m.rcpt_tos
        # (a long Subject is folded right after the colon; the parser keeps the leading space)
        kind = "immediate" if str(m.message["Subject"]).strip().startswith("High displacement risk") else "digest"
        assert (to, kind) not in got
        got[(to, kind)] = _listed(m.message)
    assert got == {
        ("housing@example.org", "digest"): everything,
        ("county@example.org", "digest"): everything,  # every bundled tract lies in 53033
        ("county@example.org", "immediate"): urgent,
        ("watch@example.org", "digest"): set(watched[:2]),  # the third GEOID does not alert
        ("weekly@example.org", "digest"): set(),  # empty_digest: a 'no new alerts' message
    }
    assert urgent and urgent <= everything


@pytest.mark.slow
def test_both_pipeline_runs_reuse_the_registered_champion(file_run: PipelineRun, smtp_run: PipelineRun) -> None:
    # not about delivery: if `risk run` stops accepting the quick champion, every pipeline test here
    # waits for a full backtest and training instead (see models_dir)
    assert not file_run.result.retrained and not smtp_run.result.retrained
    assert file_run.result.model_id == smtp_run.result.model_id == "delivery-test-champion"


@pytest.mark.slow
def test_each_message_goes_to_exactly_its_recipient(smtp_run: PipelineRun) -> None:
    rows = {(r["recipient"], r["kind"]): r for r in outbox_rows(smtp_run.engine)}
    assert len(rows) == len(smtp_run.received) == smtp_run.result.emails_sent == smtp_run.result.emails_queued == 5
    for m in smtp_run.received:
        (to,) = m.rcpt_tos
        msg = m.message
        assert [a for _, a in getaddresses([str(msg["To"])])] == [to]
        assert m.mail_from == "alerts@example.org"
        assert msg["Message-ID"] in {r["message_id"] for r in rows.values() if r["recipient"] == to}
    assert all(r["state"] == "sent" and r["attempts"] == 1 and r["last_error"] is None for r in rows.values())
    assert "quiet@example.org" not in {r["recipient"] for r in rows.values()}


# ---------------------------------------------------------------- exactly once


def test_queueing_the_same_keys_twice_sends_each_message_once(bundled_settings: Settings, engine: Engine,
                                                              server: SmtpServer) -> None:
    items = [_outgoing(bundled_settings, "a@example.org"), _outgoing(bundled_settings, "b@example.org")]
    cfg = _smtp(server)
    assert queue(engine, None, items) == 2
    assert send_queued(engine, cfg).sent == 2
    again = [_outgoing(bundled_settings, "a@example.org"), _outgoing(bundled_settings, "b@example.org")]
    assert queue(engine, None, again) == 0  # rebuilt messages (new Message-IDs), same keys
    report = send_queued(engine, cfg)
    assert (report.sent, report.failed, report.still_queued) == (0, 0, 0)
    assert sorted(m.rcpt_tos for m in server.messages) == [("a@example.org",), ("b@example.org",)]
    stored = {r["message_id"] for r in outbox_rows(engine)}
    assert {m.message["Message-ID"] for m in server.messages} == stored  # the first rendering went out


def test_an_address_listed_twice_gets_one_message_a_week(bundled_settings: Settings, bundled_sources: Sources,
                                                         engine: Engine, server: SmtpServer) -> None:
    # one address in the config and again (other capitals) in recipients_csv: idempotency_key lowercases
    # the address, so compose gives both messages the same key, and queue must store it once, not crash
    people = (Recipient(name="Ann", email="Ann@example.org"), Recipient(name="Ann B.", email="ann@example.org"))
    settings = bundled_settings.model_copy(update={
        "alerts": AlertSettings(recipients=people, top_waterfalls=0),
        "delivery": _smtp(server)})
    tracts = bundled_sources.tracts
    geoids = list(tracts.index[:4])
    scores = pd.DataFrame({"probability": [0.6, 0.4, 0.1, 0.05], "percentile": [1.0, 0.75, 0.5, 0.25],
                           "tier": ["high", "elevated", "low", "low"], "probability_change": float("nan"),
                           "percentile_change": float("nan")}, index=pd.Index(geoids, name="geoid"))
    outputs = RunOutputs(AS_OF, scores, pd.DataFrame(columns=["probability", "percentile"]),
                         pd.DataFrame(columns=["decision", "percentile", "decided_at"]), pd.DataFrame(),
                         pd.DataFrame(index=scores.index), None, [])  # type: ignore[arg-type]
    alerts, outgoing = compose(settings, tracts, outputs)
    assert [a.geoid for a in alerts] == geoids[:2]
    assert len(outgoing) == 2 and outgoing[0].key == outgoing[1].key
    assert queue(engine, None, outgoing) == 1
    assert send_queued(engine, settings.delivery).sent == 1
    assert len(server.messages) == 1


@pytest.mark.slow
def test_composing_the_same_week_again_queues_and_sends_nothing(smtp_run: PipelineRun,
                                                               pipeline_server: SmtpServer) -> None:
    run_id, outputs, sources = latest_outputs(smtp_run.settings)
    assert run_id == smtp_run.result.run_id
    _, outgoing = compose(smtp_run.settings, sources.tracts, outputs)
    assert len(outgoing) == 5
    assert queue(smtp_run.engine, run_id, outgoing) == 0
    assert send_queued(smtp_run.engine, smtp_run.settings.delivery).sent == 0
    assert len(pipeline_server.messages) == len(smtp_run.received) == 5


def test_two_senders_at_once_deliver_a_message_once(bundled_settings: Settings, engine: Engine,
                                                   server: SmtpServer) -> None:
    # `risk alerts send` while the scheduled `risk run` delivers: both must not send the same row
    queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
    cfg = _smtp(server)
    server.handler.data_delay_s = 0.5
    first = threading.Thread(target=send_queued, args=(engine, cfg))
    first.start()
    assert server.handler.first_rcpt.wait(5)  # the first sender is in the middle of its transaction
    send_queued(engine, cfg)
    first.join(10)
    assert [m.rcpt_tos for m in server.messages] == [("a@example.org",)]


# ---------------------------------------------------------------- failures and retries


def test_messages_stay_queued_while_the_server_is_down_and_go_out_when_it_is_back(
        bundled_settings: Settings, engine: Engine, server: SmtpServer) -> None:
    queue(engine, None, [_outgoing(bundled_settings, "a@example.org"), _outgoing(bundled_settings, "b@example.org")])
    cfg = _smtp(server)
    server.stop()
    report = send_queued(engine, cfg, sleep=lambda s: None)
    assert (report.sent, report.failed, report.still_queued) == (0, 0, 2)
    for row in _rows(engine).values():
        assert row["state"] == "queued" and row["attempts"] == cfg.max_attempts and row["sent_at"] is None
        assert "ConnectionRefusedError" in row["last_error"]

    server.start()  # same port
    report = send_queued(engine, cfg)
    assert (report.sent, report.failed, report.still_queued) == (2, 0, 0)
    for row in _rows(engine).values():
        assert row["state"] == "sent" and row["attempts"] == cfg.max_attempts + 1 and row["last_error"] is None
        assert row["sent_at"] is not None
    assert sorted(m.rcpt_tos for m in server.messages) == [("a@example.org",), ("b@example.org",)]


def test_retries_back_off_exponentially_and_do_not_wait_after_the_last_attempt(
        bundled_settings: Settings, engine: Engine, server: SmtpServer) -> None:
    queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
    server.stop()
    waits: list[float] = []
    send_queued(engine, _smtp(server, backoff_s=0.5, max_attempts=4), sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0]  # between the four attempts; nothing to wait for after the fourth


def test_a_server_that_never_answers_times_out_and_the_message_stays_queued(
        bundled_settings: Settings, engine: Engine) -> None:
    import socket

    with socket.socket() as mute:  # accepts connections (backlog) but never says hello
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
        cfg = DeliverySettings(**{"transport": "smtp", "from": SENDER, "backoff_s": 0, "max_attempts": 2,
                                  "smtp": SmtpSettings(host="127.0.0.1", port=mute.getsockname()[1],
                                                       timeout_s=0.3)})
        report = send_queued(engine, cfg)
    assert report.still_queued == 1
    row = _rows(engine)["a@example.org"]
    assert row["state"] == "queued" and row["attempts"] == 2
    assert "timed out" in row["last_error"].lower() or "timeout" in row["last_error"].lower()


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_a_4xx_reply_is_retried_and_the_message_arrives_once(bundled_settings: Settings, engine: Engine,
                                                             server: SmtpServer, stage: str) -> None:
    getattr(server.handler, f"{stage}_replies").extend(["451 4.3.0 try later"] * 2)
    queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
    report = send_queued(engine, _smtp(server, max_attempts=5))
    assert (report.sent, report.still_queued) == (1, 0)
    row = _rows(engine)["a@example.org"]
    assert row["state"] == "sent" and row["attempts"] == 3 and row["last_error"] is None
    assert [m.rcpt_tos for m in server.messages] == [("a@example.org",)]


def test_a_4xx_reply_that_persists_leaves_the_message_queued_for_the_next_run(
        bundled_settings: Settings, engine: Engine, server: SmtpServer) -> None:
    server.handler.reply_for["a@example.org"] = "451 4.3.0 try later"
    queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
    cfg = _smtp(server, max_attempts=3)
    assert send_queued(engine, cfg).still_queued == 1
    row = _rows(engine)["a@example.org"]
    assert row["state"] == "queued" and row["attempts"] == 3 and row["last_error"] == "451 4.3.0 try later"

    del server.handler.reply_for["a@example.org"]  # the next run
    assert send_queued(engine, cfg).sent == 1
    assert _rows(engine)["a@example.org"]["attempts"] == 4
    assert len(server.messages) == 1


@pytest.mark.parametrize(("stage", "reply"), [("rcpt", "550 5.1.1 no such user"),
                                              ("data", "554 5.6.0 message refused")])
def test_a_5xx_reply_fails_the_message_with_the_servers_reason(bundled_settings: Settings, engine: Engine,
                                                              server: SmtpServer, stage: str, reply: str) -> None:
    if stage == "rcpt":
        server.handler.reply_for["gone@example.org"] = reply
    else:
        server.handler.data_replies.append(reply)
    # created in this order, so the refused one is tried first and must not stop the other
    queue(engine, None, [_outgoing(bundled_settings, "gone@example.org")])
    queue(engine, None, [_outgoing(bundled_settings, "fine@example.org")])
    cfg = _smtp(server, max_attempts=3)
    report = send_queued(engine, cfg)
    assert (report.sent, report.failed, report.still_queued) == (1, 1, 0)
    rows = _rows(engine)
    assert rows["gone@example.org"]["state"] == "failed"
    assert rows["gone@example.org"]["attempts"] == 1  # not retried
    assert rows["gone@example.org"]["last_error"] == reply
    assert rows["gone@example.org"]["sent_at"] is None
    assert rows["fine@example.org"]["state"] == "sent"
    assert [m.rcpt_tos for m in server.messages] == [("fine@example.org",)]

    tried = len(server.handler.rcpt_seen)
    assert send_queued(engine, cfg).failed == 0  # a failed message stays failed: never tried again
    assert len(server.handler.rcpt_seen) == tried


# ---------------------------------------------------------------- injection and escaping


def test_cr_lf_in_a_recipient_or_tract_name_cannot_add_headers(bundled_settings: Settings, engine: Engine,
                                                               server: SmtpServer) -> None:
    eve = Recipient(name="Eve\r\nBcc: attacker@example.org", email="eve@example.org", immediate=True)
    rows = [_row("53033030802", name="Tract 1\r\nBcc: tract@attacker.example\r\nX-Evil: 1"), _row("53033029700")]
    items = [Outgoing(idempotency_key(eve.email, kind, WEEK), WEEK, kind, eve.email,
                      build_message(bundled_settings, eve, kind, AS_OF, rows, MAP_PNG, WATERFALLS, []))
             for kind in ("digest", "immediate")]
    queue(engine, None, items)
    assert send_queued(engine, _smtp(server)).sent == 2

    assert server.handler.rcpt_seen == ["eve@example.org", "eve@example.org"]
    for received in server.messages:
        assert received.rcpt_tos == ("eve@example.org",)
        msg = received.message
        assert msg["Bcc"] is None and msg["X-Evil"] is None
        assert not re.search(rb"^(bcc|x-evil):", received.header_block, re.IGNORECASE | re.MULTILINE)
        assert [a for _, a in getaddresses([str(msg["To"])])] == ["eve@example.org"]
        assert "\r" not in str(msg["Subject"]) and "\n" not in str(msg["Subject"])
        names = {k.lower() for k in msg.keys()}
        assert {"subject", "from", "to", "message-id", "mime-version", "content-type"} <= names
        assert names <= {"subject", "from", "to", "message-id", "mime-version", "content-type", "date"}
    immediate = next(m.message for m in server.messages if "High displacement risk" in str(m.message["Subject"]))
    assert str(immediate["Subject"]).strip().startswith("High displacement risk: Tract 1 Bcc: tract@attacker.example")


def test_html_in_names_and_notes_is_escaped_in_the_html_part(bundled_settings: Settings) -> None:
    person = Recipient(name="<script>alert('name')</script>", email="x@example.org")
    rows = [_row("53033030802", name="<img src=x onerror=alert(1)>")]
    msg = _message(bundled_settings, person, rows=rows, notes=["<script>alert('note')</script> & <b>bold</b>"])
    html = html_of(msg)
    assert "<script" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    text = text_of(msg)  # the plain-text part shows them as written
    assert "<script>alert('name')</script>" in text and "<b>bold</b>" in text


# ---------------------------------------------------------------- the file transport


def test_the_file_transport_writes_one_eml_per_message_atomically_and_never_twice(
        bundled_settings: Settings, engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    cfg = DeliverySettings(**{"transport": "file", "outbox_dir": folder, "from": SENDER, "backoff_s": 0})
    people = ["a@example.org", "b@example.org", "c@example.org"]
    queue(engine, None, [_outgoing(bundled_settings, p) for p in people])
    assert send_queued(engine, cfg).sent == 3
    rows = outbox_rows(engine)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == sorted(f"{r['key']}.eml" for r in rows)  # nothing else: no temp files
    before = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    for row in rows:
        data = (folder / f"{row['key']}.eml").read_bytes()
        assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # SMTP line endings throughout
        msg = Received("", (), data, False, None).message
        assert msg["Message-ID"] == row["message_id"]
        assert [a for _, a in getaddresses([str(msg["To"])])] == [row["recipient"]]
        _assert_multipart_with_pictures(msg)

    queue(engine, None, [_outgoing(bundled_settings, p) for p in people])  # the same week again
    assert send_queued(engine, cfg).sent == 0
    assert {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in folder.iterdir()} == before


@pytest.mark.slow
def test_risk_run_with_the_file_transport_leaves_one_eml_per_outbox_row(file_run: PipelineRun) -> None:
    rows = outbox_rows(file_run.engine)
    folder = file_run.settings.delivery.outbox_dir
    assert folder.is_relative_to(file_run.settings.base_dir)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{r['key']}.eml" for r in rows)
    assert len(rows) == file_run.result.emails_queued == file_run.result.emails_sent == 3
    assert {(r["recipient"], r["kind"]) for r in rows} == {
        ("housing@example.org", "digest"), ("county@example.org", "digest"), ("county@example.org", "immediate")}
    for row in rows:
        msg = Received("", (), (folder / f"{row['key']}.eml").read_bytes(), False, None).message
        _assert_multipart_with_pictures(msg)
        assert msg["Message-ID"] == row["message_id"] and row["state"] == "sent"


# ---------------------------------------------------------------- credentials


def test_no_auth_is_attempted_when_the_username_variable_is_unset(
        bundled_settings: Settings, engine: Engine, server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISK_TEST_SMTP_USER", raising=False)
    monkeypatch.setenv("RISK_TEST_SMTP_PASSWORD", "not-used")
    queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
    cfg = _smtp(server, smtp_username_env="RISK_TEST_SMTP_USER", smtp_password_env="RISK_TEST_SMTP_PASSWORD")
    assert send_queued(engine, cfg).sent == 1
    assert server.handler.logins == []  # the server offers AUTH, the client never asked
    assert not server.messages[0].authenticated


def test_the_login_comes_from_the_environment_variables_named_in_the_config(
        bundled_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_TEST_SMTP_USER", "alerts-bot")
    monkeypatch.setenv("RISK_TEST_SMTP_PASSWORD", "s3cret pass")
    with SmtpServer(credentials=("alerts-bot", "s3cret pass")) as server:
        queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
        cfg = _smtp(server, smtp_username_env="RISK_TEST_SMTP_USER", smtp_password_env="RISK_TEST_SMTP_PASSWORD")
        assert send_queued(engine, cfg).sent == 1
        assert server.handler.logins == [("alerts-bot", "s3cret pass")]
        assert server.messages[0].authenticated and server.messages[0].login == "alerts-bot"
    assert "s3cret" not in (_rows(engine)["a@example.org"]["last_error"] or "")


def test_a_wrong_password_fails_with_the_servers_reason(
        bundled_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_TEST_SMTP_USER", "alerts-bot")
    monkeypatch.setenv("RISK_TEST_SMTP_PASSWORD", "wrong")
    with SmtpServer(credentials=("alerts-bot", "right")) as server:
        queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
        cfg = _smtp(server, smtp_username_env="RISK_TEST_SMTP_USER", smtp_password_env="RISK_TEST_SMTP_PASSWORD")
        assert send_queued(engine, cfg).failed == 1
        assert server.messages == []
    row = _rows(engine)["a@example.org"]
    assert row["state"] == "failed" and row["last_error"].startswith("535")
    assert "wrong" not in row["last_error"]


def test_without_credentials_a_server_that_requires_auth_refuses_the_message(
        bundled_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISK_TEST_SMTP_USER", raising=False)
    with SmtpServer(credentials=("alerts-bot", "right")) as server:
        queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
        cfg = _smtp(server, smtp_username_env="RISK_TEST_SMTP_USER", smtp_password_env="RISK_TEST_SMTP_PASSWORD")
        assert send_queued(engine, cfg).failed == 1
        assert server.handler.logins == []
    assert _rows(engine)["a@example.org"]["last_error"] == "530 5.7.0 Authentication required"


def test_credentials_for_a_server_without_auth_do_not_stop_the_pass(
        bundled_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_TEST_SMTP_USER", "alerts-bot")
    monkeypatch.setenv("RISK_TEST_SMTP_PASSWORD", "pw")
    with SmtpServer(offer_auth=False) as server:
        queue(engine, None, [_outgoing(bundled_settings, "a@example.org")])
        cfg = _smtp(server, smtp_username_env="RISK_TEST_SMTP_USER", smtp_password_env="RISK_TEST_SMTP_PASSWORD")
        report = send_queued(engine, cfg)
        assert report.sent == 0 and server.messages == []  # never sent without the login it was told to use
    row = _rows(engine)["a@example.org"]
    assert row["state"] in {"queued", "failed"} and "AUTH" in row["last_error"]


def test_default_paths_are_resolved_against_the_config_folder(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # the module says relative paths are resolved against the config file's folder, so that a config
    # works from any working directory; a key left to its default must be no exception, or a scheduled
    # run started elsewhere writes its database and .eml files into whatever folder it was started in
    config = _config(tmp_path / "site", delivery={"transport": "file"})
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    del data["paths"]
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(config)
    assert settings.delivery.outbox_dir == tmp_path / "site" / "outbox"
    assert Path(str(settings.paths.database)) == tmp_path / "site" / "state" / "risk.sqlite"
    assert settings.paths.models == tmp_path / "site" / "models"


def test_the_config_has_no_place_for_smtp_secrets() -> None:
    for secret in ("password", "username", "user"):
        with pytest.raises(ValidationError, match=secret):
            SmtpSettings(**{secret: "x"})
    assert set(SmtpSettings.model_fields) == {"host", "port", "security", "username_env", "password_env",
                                              "timeout_s"}


# ---------------------------------------------------------------- addresses as the transport sends them


def test_a_name_holding_an_address_cannot_change_where_the_message_goes(bundled_settings: Settings, engine: Engine,
                                                                        server: SmtpServer) -> None:
    eve = Recipient(name='Eve <boss@attacker.example>, "x" y@attacker.example', email="eve@example.org")
    queue(engine, None, [Outgoing(idempotency_key(eve.email, "digest", WEEK), WEEK, "digest", eve.email,
                                  _message(bundled_settings, eve))])
    assert send_queued(engine, _smtp(server)).sent == 1
    (received,) = server.messages
    assert received.rcpt_tos == ("eve@example.org",)
    (to,) = received.message["To"].addresses
    assert to.addr_spec == "eve@example.org" and to.display_name == 'Eve <boss@attacker.example>, "x" y@attacker.example'


def test_a_non_ascii_address_is_sent_with_smtputf8_and_the_others_still_get_theirs(
        bundled_settings: Settings, engine: Engine, server: SmtpServer) -> None:
    queue(engine, None, [_outgoing(bundled_settings, "zoë@example.org", "Zoë"),
                         _outgoing(bundled_settings, "ann@example.org", "Ann")])
    assert send_queued(engine, _smtp(server)).sent == 2
    got = {r.rcpt_tos: r for r in server.messages}
    assert set(got) == {("zoë@example.org",), ("ann@example.org",)}
    (to,) = got[("zoë@example.org",)].message["To"].addresses
    assert to.addr_spec == "zoë@example.org" and to.display_name == "Zoë"


def test_a_non_ascii_address_fails_alone_on_a_server_without_smtputf8(bundled_settings: Settings,
                                                                       engine: Engine) -> None:
    with SmtpServer(smtputf8=False) as plain:
        queue(engine, None, [_outgoing(bundled_settings, "zoë@example.org", "Zoë"),
                             _outgoing(bundled_settings, "ann@example.org", "Ann")])
        report = send_queued(engine, _smtp(plain))
        assert (report.sent, report.failed) == (1, 1)
        assert [r.rcpt_tos for r in plain.messages] == [("ann@example.org",)]
    row = _rows(engine)["zoë@example.org"]
    assert row["state"] == "failed" and "SMTPUTF8" in row["last_error"]


def test_the_file_transport_writes_a_non_ascii_address_as_utf8(bundled_settings: Settings, engine: Engine,
                                                               tmp_path: Path) -> None:
    cfg = DeliverySettings(**{"transport": "file", "outbox_dir": tmp_path / "outbox", "from": SENDER, "backoff_s": 0})
    queue(engine, None, [_outgoing(bundled_settings, "zoë@example.org", "Zoë")])
    assert send_queued(engine, cfg).sent == 1
    (eml,) = (tmp_path / "outbox").iterdir()
    msg = Received("", (), eml.read_bytes(), False, None).message
    assert [a.addr_spec for a in msg["To"].addresses] == ["zoë@example.org"]


@pytest.mark.parametrize("address", ["zoë@example.org", "ZOË@Example.org"])
def test_config_accepts_an_internationalised_address(address: str) -> None:
    assert Recipient(name="Zoë", email=address).email == address


@pytest.mark.parametrize("address", ["zoë@@example.org", "zoë@example", "a b@example.org", "x@localhost.test"])
def test_config_refuses_an_address_no_transport_could_send(address: str) -> None:
    with pytest.raises(ValidationError, match="not a valid e-mail address"):
        Recipient(name="X", email=address)

"""Digests rendered once per area list: each recipient still gets exactly the message built for them alone.

compose renders the templates once per area list and kind, cut where the
recipient's name goes, and builds the MIME messages with header values parsed
once (risk.alerts.messages.MAIL_POLICY). These tests hold that shortcut to the
plain construction: the templates rendered with the recipient's own name and
the message built with the email package's default policy, byte for byte
(Date, Message-ID and the random multipart boundaries aside).
"""

from __future__ import annotations

import pickle
import re
from datetime import date
from email import policy
from email.message import EmailMessage, MIMEPart
from email.utils import getaddresses
from pathlib import Path

import pandas as pd
import pytest
from mailparts import html_of, text_of

import risk.alerts.digests
from risk.alerts.digests import RunOutputs, compose
from risk.alerts.messages import (
    MAIL_POLICY,
    Outgoing,
    TractRow,
    build_message,
    one_line,
    to_header,
)
from risk.core.settings import AlertSettings, Recipient, Settings
from risk.core.templating import TEMPLATES, environment
from risk.sources import Sources

AS_OF = date(2019, 3, 1)
PNG = b"\x89PNG\r\n\x1a\nnot really a picture, but bytes all the same"

NAMES = [
    "Planner",
    "<script>alert('x')</script> & \"Co\"",
    "José Ñúñez",  # not ASCII: the plain-text part changes its transfer encoding
    "Eve\r\nBcc: attacker@example.org",
    "A" * 90 + " with a greeting line too long for 7bit",
    "",
]


def _rows() -> list[TractRow]:
    return [TractRow(g, f"Census tract {g[-6:]} <b>&</b>", "31%", "high", "new", "newly in the high tier",
                     ["Eviction filings per renter household are high"], f"http://127.0.0.1:8000/tracts/{g}",
                     f"drivers-{g}" if i == 0 else None)
            for i, g in enumerate(["53033030802", "53033029700"])]


def _plain(settings: Settings, recipient: Recipient, kind: str, rows: list[TractRow], map_png: bytes | None,
           waterfalls: dict[str, bytes], notes: list[str]) -> EmailMessage:
    """The message as built before digests were shared: every template rendered for this one recipient,
    every header parsed under the default policy."""
    env = environment(settings.alerts.templates)
    context = {"recipient_name": recipient.name, "kind": kind, "as_of": AS_OF.isoformat(), "rows": rows,
               "region": settings.region.name, "has_map": map_png is not None, "notes": notes, "track_record": "",
               "track_record_text": "",
               "attribution": risk.alerts.messages.ATTRIBUTION, "attribution_text": risk.alerts.messages.ATTRIBUTION_TEXT,
               "base_url": settings.delivery.base_url.rstrip("/"), "areas": ", ".join(recipient.areas)}
    msg = EmailMessage()
    n = len(rows)
    subject = (f"{settings.region.name}: {n} tract{'s' if n != 1 else ''} flagged for displacement risk, "
               f"week of {AS_OF.isoformat()}")
    if kind == "immediate":
        subject = f"High displacement risk: {', '.join(r.name for r in rows[:3])}"
    msg["Subject"] = one_line(subject)
    msg["From"] = settings.delivery.from_
    msg["To"] = to_header(recipient.name, recipient.email)
    msg["Date"] = "Fri, 01 Mar 2019 00:00:00 GMT"
    msg["Message-ID"] = "<fixed@example.org>"
    msg.set_content(env.get_template(f"email/{kind}.txt.j2").render(**context))
    msg.add_alternative(env.get_template(f"email/{kind}.html.j2").render(**context), subtype="html", cte="base64")
    related = msg.get_payload()[1]
    related.make_related()
    images = [(map_png, "map", "map.png")] + [(waterfalls[r.geoid], r.waterfall_cid, f"drivers-{r.geoid}.png")
                                              for r in rows if r.waterfall_cid]
    for data, cid, filename in images:
        part = MIMEPart()
        part.set_content(data, "image", "png", cid=f"<{cid}>", filename=filename, disposition="inline")
        related.attach(part)
    return msg


def _wire(msg: EmailMessage) -> bytes:
    """The message as queued, with what differs between two builds of it made equal."""
    data = msg.as_bytes(policy=policy.SMTP)
    data = re.sub(rb"(?m)^Date: .*\r\n", b"Date: X\r\n", data)
    data = re.sub(rb"(?m)^Message-ID: .*\r\n", b"Message-ID: X\r\n", data)
    seen: dict[bytes, int] = {}
    return re.sub(rb"={15}\d+==", lambda m: b"BOUNDARY%d" % seen.setdefault(m.group(), len(seen)), data)


@pytest.mark.parametrize("kind", ["digest", "immediate"])
@pytest.mark.parametrize("name", NAMES)
def test_a_shared_body_gives_the_same_bytes_as_a_message_built_for_one_recipient(
        bundled_settings: Settings, name: str, kind: str) -> None:
    person = Recipient(name=name, email="someone@example.org", areas=("Seattle", "53033030802"))
    rows, waterfalls, notes = _rows(), {"53033030802": PNG + b"1"}, ["a <note> & more"]
    shared = build_message(bundled_settings, person, kind, AS_OF, rows, PNG, waterfalls, notes)
    alone = _plain(bundled_settings, person, kind, rows, PNG, waterfalls, notes)
    assert _wire(shared) == _wire(alone)


def test_a_template_that_does_more_with_the_name_than_print_it_is_rendered_per_recipient(
        bundled_settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    (folder / "email").mkdir(parents=True)
    html = (TEMPLATES / "email" / "digest.html.j2").read_text(encoding="utf-8")
    (folder / "email" / "digest.html.j2").write_text(
        html.replace("for {{ recipient_name }}", "for {{ recipient_name | upper }} ({{ recipient_name | length }})"),
        encoding="utf-8")
    settings = bundled_settings.model_copy(update={"alerts": AlertSettings(templates=folder)})
    for name in ["Ann <b>", "Bartholomew"]:
        person = Recipient(name=name, email="x@example.org")
        msg = build_message(settings, person, "digest", AS_OF, _rows(), PNG, {"53033030802": PNG}, [])
        assert _wire(msg) == _wire(_plain(settings, person, "digest", _rows(), PNG, {"53033030802": PNG}, []))
        assert f"for {name.upper().replace('<', '&lt;').replace('>', '&gt;')} ({len(name)})" in html_of(msg)


def _outputs(sources: Sources) -> tuple[list[str], RunOutputs]:
    geoids = list(sources.tracts.index[:4])
    scores = pd.DataFrame({"probability": [0.6, 0.4, 0.1, 0.05], "percentile": [1.0, 0.75, 0.5, 0.25],
                           "tier": ["high", "elevated", "low", "low"], "probability_change": float("nan"),
                           "percentile_change": float("nan")}, index=pd.Index(geoids, name="geoid"))
    return geoids, RunOutputs(AS_OF, scores, pd.DataFrame(columns=["probability", "percentile"]),
                              pd.DataFrame(columns=["decision", "percentile", "decided_at"]), pd.DataFrame(),
                              pd.DataFrame(index=scores.index), None, [])  # type: ignore[arg-type]


def test_recipients_with_the_same_areas_share_pictures_but_each_gets_their_own_escaped_name(
        bundled_settings: Settings, bundled_sources: Sources, monkeypatch: pytest.MonkeyPatch) -> None:
    geoids, outputs = _outputs(bundled_sources)
    people = (Recipient(name="<b>Ann</b>", email="ann@example.org", areas=tuple(geoids)),
              Recipient(name="Bob & Co\r\nBcc: eve@example.org", email="bob@example.org", areas=tuple(geoids)),
              Recipient(name="Cy", email="cy@example.org", areas=(geoids[0],)))
    settings = bundled_settings.model_copy(update={"alerts": AlertSettings(recipients=people, top_waterfalls=0)})
    drawn: list[frozenset[str]] = []
    area_map = risk.alerts.digests.area_map

    def counted(tracts: object, area: set[str], flagged: dict[str, str]) -> bytes:
        drawn.append(frozenset(area))
        return area_map(tracts, area, flagged)  # type: ignore[arg-type]

    monkeypatch.setattr(risk.alerts.digests, "area_map", counted)
    _, outgoing = compose(settings, bundled_sources.tracts, outputs)
    by: dict[str, Outgoing] = {o.recipient: o for o in outgoing}
    assert sorted(by) == ["ann@example.org", "bob@example.org", "cy@example.org"]
    assert sorted(map(len, drawn)) == [1, 4]  # one map per area, not per recipient

    ann, bob, cy = (by[p.email].message for p in people)
    pictures = [[p for p in m.walk() if p.get_content_type() == "image/png"] for m in (ann, bob, cy)]
    assert len(pictures[0]) == len(pictures[1]) == 1
    assert pictures[0][0] is pictures[1][0]  # one part, encoded once, in both messages
    assert pictures[2][0] is not pictures[0][0]  # another area: its own map

    assert "&lt;b&gt;Ann&lt;/b&gt;" in html_of(ann) and "Bob" not in html_of(ann)
    assert "Bob &amp; Co" in html_of(bob) and "Ann" not in html_of(bob) and "<b>" not in html_of(bob)
    assert "for <b>Ann</b> -" in text_of(ann) and "Bob & Co" in text_of(bob)
    assert html_of(ann).replace("&lt;b&gt;Ann&lt;/b&gt;", "X") == html_of(bob).replace(
        "Bob &amp; Co\r\nBcc: eve@example.org", "X").replace("Bob &amp; Co\nBcc: eve@example.org", "X")
    wire = bob.as_bytes(policy=policy.SMTP)
    assert not re.search(rb"(?im)^bcc:", wire.split(b"\r\n\r\n", 1)[0])
    assert getaddresses([str(bob["To"])]) == [("Bob & Co Bcc: eve@example.org", "bob@example.org")]


def test_the_shared_header_policy_still_refuses_cr_and_lf() -> None:
    for header in ("Subject", "From", "To"):
        msg = EmailMessage(policy=MAIL_POLICY)
        with pytest.raises(ValueError, match="linefeed or carriage return"):
            msg[header] = "x\r\nBcc: attacker@example.org"
    first, second = EmailMessage(policy=MAIL_POLICY), EmailMessage(policy=MAIL_POLICY)
    first["Subject"] = second["Subject"] = "Same subject"
    assert first["Subject"] is second["Subject"]  # parsed once, shared
    copied = pickle.loads(pickle.dumps(first))  # as the default policy's messages do
    assert copied.as_bytes() == first.as_bytes()


def test_the_area_map_fills_each_flagged_tract_with_its_tier_colour(bundled_sources: Sources) -> None:
    import io

    import numpy as np
    from PIL import Image

    from risk.alerts.messages import TIER_COLOURS, area_map

    tracts = bundled_sources.tracts
    biggest = tracts.geometry.to_crs(3857).area.sort_values().index[-2:]  # big enough to show at e-mail size
    png = area_map(tracts, set(tracts.index), {biggest[0]: "high", biggest[1]: "elevated"})
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)

    def share(colour: str) -> float:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        return float((np.abs(pixels - rgb).sum(axis=1) < 12).mean())

    assert share(TIER_COLOURS["high"]) > 0.005 and share(TIER_COLOURS["elevated"]) > 0.005
    assert share(TIER_COLOURS["watch"]) == 0
    assert share("#f2f2f2") > 0.1  # the other tracts, unflagged


def test_one_recipient_whose_message_cannot_be_written_does_not_stop_the_others(
        bundled_settings: Settings, bundled_sources: Sources) -> None:
    geoids, outputs = _outputs(bundled_sources)
    # an address older validation let through (a recipients CSV edited after `config check`): built unvalidated
    broken = Recipient.model_construct(name="Bad", email="bad\udcff@example.org", areas=tuple(geoids),
                                       immediate=False, empty_digest=False)
    people = (Recipient(name="Zoë", email="zoë@example.org", areas=tuple(geoids)), broken,
              Recipient(name="Ann", email="ann@example.org", areas=tuple(geoids)))
    settings = bundled_settings.model_copy(update={"alerts": AlertSettings(recipients=people, top_waterfalls=0)})
    problems: list[str] = []
    _, outgoing = compose(settings, bundled_sources.tracts, outputs, problems=problems)
    assert [o.recipient for o in outgoing] == ["zoë@example.org", "ann@example.org"]
    (problem,) = problems
    assert "bad" in problem and "digest" in problem


def test_a_bad_row_of_the_recipients_csv_is_left_out_of_the_run_and_refused_by_config_check(
        bundled_settings: Settings, bundled_sources: Sources, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from risk.cli.main import main

    geoids, outputs = _outputs(bundled_sources)
    people = tmp_path / "people.csv"
    people.write_text("name,email,areas\nAnn,ann@example.org,all\nTypo,typo@@example.org,all\n", encoding="utf-8")
    settings = bundled_settings.model_copy(update={"alerts": AlertSettings(recipients_csv=people, top_waterfalls=0)})
    problems: list[str] = []
    _, outgoing = compose(settings, bundled_sources.tracts, outputs, problems=problems)
    assert [o.recipient for o in outgoing] == ["ann@example.org"]
    assert len(problems) == 1 and "line 3" in problems[0] and "typo@@example.org" in problems[0]

    config = tmp_path / "config.yaml"
    text = bundled_settings.config_path.read_text(encoding="utf-8")
    config.write_text(text + f"\nalerts:\n  recipients_csv: {people}\n", encoding="utf-8")
    for src in ("data",):  # the bundled config's relative paths
        (tmp_path / src).symlink_to(bundled_settings.base_dir / src)
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check"])
    assert result.exit_code == 2 and "line 3" in result.output, result.output

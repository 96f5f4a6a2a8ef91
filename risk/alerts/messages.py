"""Rendering alert e-mails: Jinja2 templates, an area map and SHAP waterfalls, as MIME messages.

Every message is multipart/alternative (plain text and HTML); the HTML part
carries its pictures inline (multipart/related, referenced by Content-ID).
Pictures are drawn once per tract or per area and shared by every recipient
who gets them, so a thousand recipients do not mean a thousand maps. Likewise
the templates are rendered once per area list and kind (:func:`render_body`);
each recipient's message only fills in the name and its own headers
(:func:`personal_message`).
"""

from __future__ import annotations

import email.policy
import functools
import io
import re
import textwrap
from dataclasses import dataclass, field
from datetime import date
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.utils import formatdate, make_msgid, parseaddr, quote
from pathlib import Path
from typing import Any

import geopandas as gpd
import jinja2
import matplotlib
from markupsafe import escape

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

from risk.alerts.rules import REASONS, Alert  # noqa: E402
from risk.core.settings import Recipient, Settings  # noqa: E402
from risk.core.templating import environment  # noqa: E402
from risk.sources.registry import families  # noqa: E402

TIER_COLOURS = {"high": "#b2182b", "elevated": "#ef8a62", "watch": "#fddbc7", "low": "#e0e0e0"}

ATTRIBUTION = [family.attribution for family in families() if family.credit]
"""Every credit an e-mail can carry, in registry order; :func:`attribution` keeps the configured families'."""


@dataclass(frozen=True)
class Outgoing:
    """A rendered message and its idempotency key."""

    key: str
    week: str
    kind: str
    recipient: str
    message: EmailMessage


def one_line(text: str) -> str:
    """A header-safe single line: control characters (CR, LF, tabs) become spaces."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(text)).strip()


def to_header(name: str, address: str) -> str:
    """A To: value whose display name is always one quoted string, so that a name holding ``<x@y.org>``, commas
    or CR/LF can never add or change an address; ``email.utils.formataddr`` would refuse a non-ASCII address."""
    return f'"{quote(one_line(name))}" <{address}>' if one_line(name) else f"<{address}>"


def _wrap(text: str, indent: str) -> str:
    """Plain-text lines under 78 characters, so the text part needs no transfer encoding."""
    return textwrap.fill(text, 74 - len(indent), subsequent_indent=indent)


ATTRIBUTION_TEXT = [_wrap(a, "  ") for a in ATTRIBUTION]


def attribution(settings: Settings) -> list[str]:
    """The credits of the configured families that e-mails credit, in registry order."""
    return [family.attribution for family in families() if family.credit and family.configured(settings)]


@dataclass
class Pictures:
    """PNG bytes drawn once and shared: maps by tract set, waterfalls by tract."""

    maps: dict[frozenset[str], bytes] = field(default_factory=dict)
    waterfalls: dict[str, bytes] = field(default_factory=dict)


def _rings(geometry: gpd.GeoSeries) -> MplPath | None:
    """Every ring of every polygon as one path, outer rings anticlockwise and holes clockwise, so that filling by
    the non-zero rule leaves holes empty (a tract that encloses another does not paint over it)."""
    parts = shapely.get_parts(geometry.to_numpy())
    polygons = shapely.orient_polygons(parts[shapely.get_type_id(parts) == 3])  # 3: Polygon
    coords, ring = shapely.get_coordinates(shapely.get_rings(polygons), return_index=True)
    if not len(coords):
        return None
    codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
    starts = np.r_[0, np.flatnonzero(np.diff(ring)) + 1]
    codes[starts] = MplPath.MOVETO
    codes[np.r_[starts[1:] - 1, len(coords) - 1]] = MplPath.CLOSEPOLY
    return MplPath(coords, codes)


def area_map(tracts: gpd.GeoDataFrame, area: set[str], flagged: dict[str, str]) -> bytes | None:
    """A static map of the area's tracts with flagged tracts coloured by tier; None when none of them has a shape
    (a region configured without boundaries: the e-mail's table stands alone).

    Each colour is one path drawn once, not a patch per tract: at national scale a patch per tract takes tens of
    seconds per map."""
    shown = tracts.loc[sorted(area)] if area else tracts
    shown = shown[shown.geometry.notna().to_numpy()]
    if shown.empty:
        return None
    # e-mail pictures are small: simplified outlines draw faster and look the same
    shown = shown.set_geometry(shown.geometry.simplify(0.0003))
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=90)

    def draw(frame: gpd.GeoDataFrame, face: str, edge: str, width: float) -> None:
        path = _rings(frame.geometry)
        if path is not None:
            ax.add_collection(PathCollection([path], facecolors=face, edgecolors=edge, linewidths=width))

    draw(shown, "#f2f2f2", "#bbbbbb", 0.3)
    hits = shown[shown.index.isin(list(flagged))]
    for tier, group in hits.groupby(hits.index.map(lambda g: flagged[g])):
        draw(group, TIER_COLOURS.get(tier, "#777777"), "#333333", 0.6)
    ax.autoscale_view()
    geographic = shown.crs is not None and shown.crs.is_geographic and len(shown)
    # degrees of longitude shrink away from the equator: stretch as a map of that latitude would
    ax.set_aspect(1 / np.cos(np.radians(shown.total_bounds[[1, 3]].mean())) if geographic else "equal")
    ax.set_axis_off()
    ax.set_title(f"{len(hits)} flagged tract{'s' if len(hits) != 1 else ''} this week", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return buf.getvalue()


@dataclass(frozen=True)
class TractRow:
    """One row of the digest table."""

    geoid: str
    name: str
    probability: str
    tier: str
    change: str
    reasons: str
    drivers: list[str]
    url: str
    waterfall_cid: str | None
    drivers_text: tuple[str, ...] = ()


def _change(alert: Alert) -> str:
    if alert.percentile_change is None:
        return "new"
    return f"{alert.percentile_change:+.0f} points"


def tract_rows(alerts: list[Alert], names: dict[str, str], sentences: dict[str, list[str]], base_url: str,
               waterfall_cids: dict[str, str]) -> list[TractRow]:
    """Table rows of a digest, top three drivers as sentences."""
    return [TractRow(a.geoid, names.get(a.geoid, a.geoid), f"{100 * a.probability:.0f}%", a.tier, _change(a),
                     ", ".join(REASONS[r] for r in a.reasons), sentences.get(a.geoid, [])[:3],
                     f"{base_url.rstrip('/')}/tracts/{a.geoid}", waterfall_cids.get(a.geoid),
                     tuple(_wrapped_sentence(s) for s in sentences.get(a.geoid, [])[:3])) for a in alerts]


@functools.lru_cache(maxsize=4096)
def _wrapped_sentence(sentence: str) -> str:
    # wrapped once per tract and week, not once per recipient
    return _wrap(sentence, "      ")


class _SharedHeaders(HeaderRegistry):
    """A header registry that parses each value of a repeated header once.

    Parsing dominates building a message: a thousand messages repeat the same Subject, From and
    Content-Type values. Header objects are immutable, so one parsed value can sit in many messages (the
    shared picture parts already do so). The policy checks for CR and LF before any parsing, so that check
    still runs for every header of every message."""

    # To and Message-ID differ per message: caching them would only churn the cache
    REPEATED = frozenset({"subject", "from", "date", "mime-version", "content-type", "content-transfer-encoding",
                          "content-disposition", "content-id"})

    def __init__(self) -> None:
        super().__init__()
        self._parsed = functools.lru_cache(maxsize=256)(super().__call__)
        # the base class builds a new header class on each lookup, i.e. for every header set on a message
        self._classes = functools.lru_cache(maxsize=None)(super().__getitem__)

    def __getitem__(self, name: str) -> type[BaseHeader]:
        """The header class of ``name``, built once."""
        return self._classes(name)

    def __reduce__(self) -> tuple[type[_SharedHeaders], tuple[()]]:
        # the caches do not pickle: a message sent to another process (a job store, a pool) gets fresh ones
        return (_SharedHeaders, ())

    def __call__(self, name: str, value: Any) -> BaseHeader:
        """The parsed header, from the cache when a repeated header had this value before."""
        if type(value) is str and name.lower() in self.REPEATED:  # address lists and the like are not hashable
            return self._parsed(name, value)
        return super().__call__(name, value)


MAIL_POLICY = email.policy.default.clone(header_factory=_SharedHeaders())
"""``email.policy.default`` with header values parsed once: messages serialize exactly as under the default."""

_NAME_PROBES = ("<@1 name & 'one'>", "<@@2 \"Second\" probe, longer & longer>")
"""Stand-ins for the recipient's name, with characters HTML escapes, of different lengths and content."""


@dataclass(frozen=True)
class _Slotted:
    """A rendered template cut where the recipient's name goes; ``escaped`` says per gap whether the name is
    inserted HTML-escaped (an autoescaped template) or as written (the plain-text one)."""

    pieces: tuple[str, ...]
    escaped: tuple[bool, ...]

    def fill(self, name: str) -> str:
        """The text as the template renders it for ``name``."""
        safe = str(escape(name))  # what autoescaping writes for {{ recipient_name }}
        out = [self.pieces[0]]
        for esc, piece in zip(self.escaped, self.pieces[1:]):
            out += [safe if esc else name, piece]
        return "".join(out)


def _cut(rendered: str, probe: str) -> _Slotted:
    forms = {probe: False, str(escape(probe)): True}
    pieces, escaped, at = [], [], 0
    for m in re.finditer("|".join(re.escape(f) for f in forms), rendered):
        pieces.append(rendered[at:m.start()])
        escaped.append(forms[m.group()])
        at = m.end()
    pieces.append(rendered[at:])
    return _Slotted(tuple(pieces), tuple(escaped))


@dataclass(frozen=True)
class Body:
    """What every recipient of one area list and kind gets alike: subject, both texts around the name, and
    the picture parts; :func:`personal_message` adds the greeting and the per-message headers."""

    subject: str
    text: jinja2.Template
    html: jinja2.Template
    context: dict[str, Any]
    images: tuple[MIMEPart, ...]
    text_slots: _Slotted | None
    html_slots: _Slotted | None

    def render(self, name: str) -> tuple[str, str]:
        """The plain text and the HTML for a recipient called ``name``."""
        return (self._one(self.text, self.text_slots, name), self._one(self.html, self.html_slots, name))

    def _one(self, template: jinja2.Template, slots: _Slotted | None, name: str) -> str:
        return slots.fill(name) if slots else template.render(**self.context, recipient_name=name)


def _slots(template: jinja2.Template, context: dict[str, Any]) -> _Slotted | None:
    """The template rendered once, cut at the name; None when it does more with the name than print it
    (a filter, its length): then it is rendered per recipient. Two different stand-ins must give the same
    pieces. A template that branches on the name's content (``if 'Dr' in recipient_name``) is not
    supported: the greeting is meant to be printed, not interpreted."""
    first, second = (_cut(template.render(**context, recipient_name=p), p) for p in _NAME_PROBES)
    return first if first == second else None


def render_body(settings: Settings, kind: str, as_of: date, rows: list[TractRow], areas: tuple[str, ...],
                map_png: bytes | None, waterfalls: dict[str, bytes], notes: list[str], region: str = "",
                track_record: str = "") -> Body:
    """Render the templates and pick the pictures once for everyone who follows ``areas`` (in ``region``: the
    regions their tracts lie in; default the configured region). ``track_record`` is the model's backtest in
    one sentence (:func:`risk.model.track_record.track_record`)."""
    env = environment(settings.alerts.templates)
    region = region or settings.region.name
    credits = attribution(settings)
    context = {"kind": kind, "as_of": as_of.isoformat(), "rows": rows,
               "region": region, "has_map": map_png is not None, "notes": notes, "track_record": track_record,
               "track_record_text": _wrap(track_record, "") if track_record else "",
               "attribution": credits, "attribution_text": [_wrap(a, "  ") for a in credits],
               "base_url": settings.delivery.base_url.rstrip("/"), "areas": ", ".join(areas)}
    text = env.get_template(f"email/{kind}.txt.j2")
    html = env.get_template(f"email/{kind}.html.j2")
    n = len(rows)
    subject = (f"{region}: {n} tract{'s' if n != 1 else ''} flagged for displacement risk, "
               f"week of {as_of.isoformat()}" if n else
               f"{region}: no new displacement-risk alerts, week of {as_of.isoformat()}")
    if kind == "immediate":
        subject = f"High displacement risk: {', '.join(r.name for r in rows[:3])}"
    images = [(map_png, "map", "map.png")] if map_png is not None else []
    images += [(waterfalls[r.geoid], r.waterfall_cid, f"drivers-{r.geoid}.png") for r in rows
               if r.waterfall_cid and r.geoid in waterfalls]
    return Body(one_line(subject), text, html, context,
                tuple(_image_part(data, cid, filename) for data, cid, filename in images),
                _slots(text, context), _slots(html, context))


def personal_message(settings: Settings, body: Body, recipient: Recipient) -> EmailMessage:
    """A multipart/alternative message of ``body`` for one recipient, pictures inline (multipart/related)."""
    text, html = body.render(recipient.name)
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["Subject"] = body.subject
    msg["From"] = settings.delivery.from_
    msg["To"] = to_header(recipient.name, recipient.email)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=parseaddr(settings.delivery.from_)[1].split("@")[-1])
    msg.set_content(text)
    # base64 rather than quoted-printable: the same bytes on the wire, a fraction of the encoding time
    msg.add_alternative(html, subtype="html", cte="base64")
    if body.images:
        html_part = msg.get_payload()[1]
        html_part.make_related()
        for part in body.images:
            html_part.attach(part)
    return msg


def build_message(settings: Settings, recipient: Recipient, kind: str, as_of: date, rows: list[TractRow],
                  map_png: bytes | None, waterfalls: dict[str, bytes], notes: list[str]) -> EmailMessage:
    """A multipart/alternative message with inline pictures, rendered from the templates."""
    body = render_body(settings, kind, as_of, rows, recipient.areas, map_png, waterfalls, notes)
    return personal_message(settings, body, recipient)


@functools.lru_cache(maxsize=256)
def _image_part(data: bytes, cid: str, filename: str) -> MIMEPart:
    """An inline PNG part, encoded once and shared by every message that shows the picture."""
    part = MIMEPart()
    part.set_content(data, "image", "png", cid=f"<{cid}>", filename=filename, disposition="inline")
    return part


def save_preview(msg: EmailMessage, folder: Path, stem: str) -> Path:
    """The HTML part with its pictures as files beside it, for opening in a browser."""
    folder.mkdir(parents=True, exist_ok=True)
    html_part = msg.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    for part in msg.walk():
        cid = part.get("Content-ID")
        if cid and part.get_content_type() == "image/png":
            name = f"{stem}-{part.get_filename()}"
            (folder / name).write_bytes(part.get_payload(decode=True))
            html = html.replace(f"cid:{cid.strip('<>')}", name)
    path = folder / f"{stem}.html"
    path.write_text(html, encoding="utf-8")
    return path


def tract_names(tracts: gpd.GeoDataFrame, areas: dict[str, set[str]]) -> dict[str, str]:
    """'Census tract 317.05 (Seattle)': the tract's short name and the named area it lies in; outside every named
    area, its county where a source or the settings name it ('Census tract 9800.21, Los Angeles County')."""
    where: dict[str, str] = {}
    for area, members in areas.items():
        for g in members:
            where.setdefault(g, area)
    counties = tracts["county"] if "county" in tracts.columns else pd.Series(pd.NA, index=tracts.index)
    return {g: f"Census tract {n}" + (f" ({where[g]})" if g in where else f", {c}" if isinstance(c, str) else "")
            for g, n, c in zip(tracts.index, tracts["name"].astype(str), counties.astype(object), strict=True)}


def frame_sentences(driver_rows: pd.DataFrame) -> dict[str, list[str]]:
    """Driver sentences per tract in rank order."""
    if driver_rows.empty:
        return {}
    ordered = driver_rows.sort_values(["geoid", "rank"])
    return {g: list(group["sentence"]) for g, group in ordered.groupby("geoid")}

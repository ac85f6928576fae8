"""``citywatch evaluate --html``: one self-contained HTML file (inline CSS, images as base64 JPEG)
for testers: the console's headline tables at the top, then one card per media with its labels,
what alarmed and when, the highest confidences, correct / missed / false-alarm colours, and the
frame of its first alarm with the alarming findings' boxes drawn on it.

All text that comes from the labels file or the results goes through :func:`html.escape`."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from pipeline.app.evaluate.report import COLUMNS, NOTES, mode_line, score_rows, summary_line, wrong_calls
from pipeline.app.evaluate.results import TRAFFIC_PREDICTED, outcome, traffic_confusion
from pipeline.app.evaluate.run import HEADLINE, AlarmFrame, Evaluation, MediaResult

IMAGE_WIDTH = 400
JPEG_QUALITY = 80
#: Box colours (BGR for OpenCV) and their CSS twins for the legend.
BOX_BGR = {"fire": (0, 0, 255), "smoke": (255, 255, 0), "flood": (255, 120, 0), "congestion": (0, 200, 255),
           "camera_obstructed": (255, 0, 255)}
#: Labelled traffic level -> the predicted level that counts as right.
TRAFFIC_MATCH = {"congested": "heavy", "medium": "medium", "free": "free", "empty": "free"}
_OUTCOME_TEXT = {"TP": "detected", "TN": "quiet, correct", "FN": "missed", "FP": "false alarm"}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d1d1f;background:#f5f5f7}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
table{border-collapse:collapse;background:#fff;margin:4px 0 12px}
th,td{border:1px solid #d2d2d7;padding:3px 8px;text-align:right}th{background:#e8e8ed}
td.l,th.l{text-align:left}tr.head td{font-weight:600}td.hit{background:#d9f2dc;font-weight:600}
.note{color:#555;max-width:1100px}.wrong li{color:#8a4b00}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:14px}
.card{background:#fff;border-radius:8px;border:1px solid #d2d2d7;border-left:8px solid #999;padding:10px 12px}
.card.correct{border-left-color:#2e9d4a}.card.missed{border-left-color:#e08a00}
.card.false-alarm{border-left-color:#d62c2c}.card.error{border-left-color:#777;background:#eee}
.path{font-weight:600;word-break:break-all}.meta{color:#666;font-size:12px}
.chip{display:inline-block;border-radius:10px;padding:1px 8px;margin:2px 4px 2px 0;font-size:12px;background:#eee}
.TP{background:#c9eccf}.TN{background:#e3f1e5}.FN{background:#ffe1b3}.FP{background:#ffc9c9}
.desc{color:#444;font-size:12px;margin:4px 0}img{display:block;margin-top:6px;max-width:100%;border-radius:4px}
.noimg{color:#888;font-size:12px;margin-top:6px}
#only-wrong:checked ~ .cards .card.correct{display:none}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, unit: str = " s") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def _px(value: float, size: int) -> int:
    """A normalized coordinate as a pixel index inside ``size``."""
    return int(np.clip(round(value * size), 0, size - 1))


def alarm_jpeg(frame: AlarmFrame, width: int = IMAGE_WIDTH) -> bytes:
    """The alarm frame scaled to ``width`` px with each started type's normalized boxes drawn."""
    image = frame.image if frame.image.ndim == 3 else cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)
    h, w = image.shape[:2]
    height = max(1, round(h * width / w))
    shrink = width < w
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    for kind, boxes in frame.boxes.items():
        colour = BOX_BGR.get(kind, (255, 255, 255))
        corners = [(_px(x, width), _px(y, height), _px(x + bw, width), _px(y + bh, height)) for x, y, bw, bh in boxes]
        for x0, y0, x1, y1 in corners:
            cv2.rectangle(image, (x0, y0), (x1, y1), (0, 0, 0), 4)
            cv2.rectangle(image, (x0, y0), (x1, y1), colour, 2)
        if corners:  # one name per type, on its largest box
            x0, y0, _, _ = max(corners, key=lambda c: (c[2] - c[0]) * (c[3] - c[1]))
            at = (x0 + 3, y0 + 14 if y0 < 16 else y0 - 4)
            cv2.putText(image, kind, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(image, kind, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return buf.tobytes() if ok else b""


def status(r: MediaResult) -> str:
    """The card's colour class: error, false-alarm, missed or correct (worst first)."""
    if r.error:
        return "error"
    outcomes = {outcome(r, task) for task in HEADLINE}
    return "false-alarm" if "FP" in outcomes else "missed" if "FN" in outcomes else "correct"


def _table(header: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """``rows`` are ``(tr class, cells)``; the first cell of each row is left-aligned."""
    head = "".join(f'<th class="{"l" if i < 2 else ""}">{_e(h)}</th>' for i, h in enumerate(header))
    body = "".join(f'<tr class="{cls}">' + "".join(
        f'<td class="{"l" if i < 2 else ""}">{_e(c)}</td>' for i, c in enumerate(cells)) + "</tr>"
        for cls, cells in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _traffic_table(ev: Evaluation) -> str:
    head = "".join(f"<th>{_e(p)}</th>" for p in TRAFFIC_PREDICTED)
    body = ""
    for label, counts in traffic_confusion(ev.results).items():
        cells = "".join(f'<td class="{"hit" if TRAFFIC_MATCH[label] == p else ""}">{counts[p]}</td>'
                        for p in TRAFFIC_PREDICTED)
        body += f'<tr><td class="l">{_e(label)}</td>{cells}</tr>'
    return f'<table><tr><th class="l">labelled \\ predicted</th>{head}</tr>{body}</table>'


def card(r: MediaResult) -> str:
    """One media's card."""
    m = r.media
    kind = "still" if m.is_still else "clip"
    parts = [f'<div class="card {status(r)}"><div class="path">{_e(m.path)}</div>',
             f'<div class="meta">source {_e(r.source)} · fold {_e(r.fold)} · {kind} · {r.frames} frames · '
             f'{r.footage_s:.1f} s · labels line {m.line}</div>',
             f'<div>labels: <span class="chip">fire {_e(m.fire)}</span><span class="chip">flood {_e(m.flood)}'
             f'</span><span class="chip">traffic {_e(m.traffic)}</span></div>']
    if m.description:
        parts.append(f'<div class="desc">{_e(m.description)}</div>')
    if r.error:
        parts.append(f"<div><b>skipped:</b> {_e(r.error)}</div></div>")
        return "".join(parts)
    chips = []
    for task in HEADLINE:
        got = outcome(r, task)
        if got is None:
            continue
        when = "" if r.alarm_s(task) is None else f", alarm {_fmt(r.alarm_s(task))}"
        when += "" if r.tta_s(task) is None else f", TTA {_fmt(r.tta_s(task))}"
        chips.append(f'<span class="chip {got}">{_e(task)}: {_OUTCOME_TEXT[got]}{when}</span>')
    parts.append(f"<div>{''.join(chips) or 'no headline label'}</div>")
    alarms = ", ".join(f"{_e(t)} at {s:.1f} s" for t, s in sorted(r.first_start_s.items(), key=lambda kv: kv[1]))
    onset = "none given" if m.onset_s is None else f"{m.onset_s:.1f} s"
    parts.append(f"<div>alarmed: {alarms or 'nothing'} · labelled onset {onset}</div>")
    conf = ", ".join(f"{_e(t)} {c:.2f}" for t, c in sorted(r.max_confidence.items()))
    parts.append(f"<div>max confidence: {conf or '-'}</div>")
    parts.append(f"<div>traffic predicted: {_e(r.predicted_traffic)} (labelled {_e(m.traffic)})</div>")
    if r.alarm_frame is not None:
        data = base64.b64encode(alarm_jpeg(r.alarm_frame)).decode("ascii")
        started = ", ".join(_e(t) for t in r.alarm_frame.boxes)
        parts.append(f'<img src="data:image/jpeg;base64,{data}" width="{IMAGE_WIDTH}" '
                     f'alt="first alarm ({started}) at {r.alarm_frame.t_s:.1f} s">'
                     f'<div class="meta">first alarm frame: {started} at {r.alarm_frame.t_s:.1f} s</div>')
    else:
        parts.append('<div class="noimg">no alarm, no frame kept</div>')
    parts.append("</div>")
    return "".join(parts)


def render_html(ev: Evaluation, title: str = "citywatch evaluate") -> str:
    """The whole report as one HTML document."""
    rows = [("head" if kind == "all" and task in HEADLINE else "", cells) for task, kind, cells in score_rows(ev)]
    wrong = "".join(f"<li>{_e(line)}</li>" for line in wrong_calls(ev))
    legend = " ".join(f'<span class="chip" style="border:2px solid rgb{tuple(reversed(bgr))}">{_e(t)}</span>'
                      for t, bgr in BOX_BGR.items())
    counts = {s: sum(status(r) == s for r in ev.results) for s in ("correct", "missed", "false-alarm", "error")}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "".join([
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>',
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_e(title)} @ {ev.fps:g} frames/s</h1>",
        f'<div class="meta">{_e(stamp)}</div><p>{_e(mode_line(ev))}</p>',
        _table(list(COLUMNS), rows),
        "<h2>Traffic level</h2>", _traffic_table(ev),
        f"<p>{_e(summary_line(ev))}</p><p class='note'>{_e(NOTES)}</p>",
        f"<h2>Wrong calls ({len(wrong_calls(ev))})</h2><ul class='wrong'>{wrong or '<li>none</li>'}</ul>",
        f"<h2>Media ({len(ev.results)}: {counts['correct']} correct, {counts['missed']} with a miss, "
        f"{counts['false-alarm']} with a false alarm, {counts['error']} skipped)</h2>",
        f"<p class='meta'>box colours: {legend}</p>",
        '<input type="checkbox" id="only-wrong"><label for="only-wrong"> show only media with a wrong call '
        "or skipped</label>",
        f'<div class="cards">{"".join(card(r) for r in ev.results)}</div>',
        "</body></html>\n",
    ])


def write_html(ev: Evaluation, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(ev), encoding="utf-8")

"""Showing a monitoring report: a terminal summary (rich), JSON, and a self-contained
HTML page with charts (inline SVG, no scripts, nothing fetched from the network)."""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any

from modelport.monitor import svg

if TYPE_CHECKING:
    from rich.console import Console


def to_json(report: dict[str, Any], outcome: dict[str, Any] | None = None) -> str:
    """The report (and the outcome of ``--check``) as JSON."""
    data = dict(report)
    if outcome is not None:
        data["check"] = {k: v for k, v in outcome.items() if k != "report"}
    return json.dumps(data, indent=2, default=str)


def _num(x: object, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _day(iso: str | None) -> str:
    if not iso:
        return "-"
    text = iso.replace("+00:00", "")
    return text[:10] if text.endswith("T00:00:00") else text[:16].replace("T", " ")


def _tests_by_feature(tests: list[dict]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for t in tests:
        out.setdefault(t["feature"], {})[t["statistic"]] = t
    return out


# -- terminal ----------------------------------------------------------------------------

def print_terminal(report: dict[str, Any], console: Console | None = None,
                   outcome: dict[str, Any] | None = None) -> None:
    """Print the report as a few rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    ref = report["reference"]
    console.print(f"[bold]{report['model']}[/] (version {report['version']})  log "
                  f"{report['log']}")
    console.print(f"reference: training statistics of version {ref['version']} "
                  f"({ref.get('rows') or '?'} rows)  period {_day(report['period']['since'])} "
                  f".. {_day(report['period']['until'])}, window {report['period']['window']}")
    console.print(f"{report['rows']:,} predictions logged, {report.get('labelled', 0):,} "
                  f"labelled, {report.get('dropped', 0):,} dropped")
    if report.get("note"):
        console.print(f"[yellow]{report['note']}[/]")
        _print_outcome(console, outcome)
        return
    drift = report["drift"]
    if drift["window"]:
        w = drift["window"]
        table = Table("feature", "kind", "PSI", "KS / chi² p", "drifted",
                      title=f"drift in the current window, {_day(w['start'])} "
                            f"({w['rows']:,} rows) vs training")
        for section in ("features", "prediction"):
            for name, tests in _tests_by_feature(drift[section]).items():
                psi = tests.get("psi", {})
                other = tests.get("ks") or tests.get("chi2_p") or {}
                drifted = any(t["drifted"] for t in tests.values())
                label = name if section == "features" else f"prediction {name}"
                mark = "[bold red]yes[/]" if drifted else "no"
                note = next((t.get("note") for t in tests.values() if t.get("note")), None)
                table.add_row(label, psi.get("kind", ""), _cell(psi), _cell(other),
                              mark if note is None else "-")
        console.print(table)
    perf = report["performance"]
    if perf["change"] or perf["current"]:
        w = perf["window"]
        table = Table("metric", "reference", "current", "change",
                      title=f"performance, window {_day(w['start'])} "
                            f"({w['labelled']:,} labelled)")
        for name, value in perf["current"].items():
            if name == "labelled":
                continue
            c = perf["change"].get(name)
            change = "-" if c is None else (
                f"{-c['drop']:+.4f}" + (" [red](worse)[/]" if c["worse"] else ""))
            table.add_row(name, _num(perf["reference"].get(name)), _num(value), change)
        console.print(table)
    elif perf.get("note"):
        console.print(f"performance: {perf['note']}")
    table = Table("window", "rows", "errors", "flagged", "p99 ms", "drifted features",
                  "score PSI", "labelled", _main_metric(report) or "metric", title="over time")
    metric = _main_metric(report)
    for w in report["windows"]:
        score = (w.get("prediction") or {}).get("score", {})
        perf_w = w.get("performance") or {}
        table.add_row(_day(w["start"]), f"{w['rows']:,}", f"{w['errors']:,}",
                      f"{w.get('flagged', 0):,}", _num(w["latency_ms"].get("p99")),
                      ", ".join(w.get("drifted_features", [])) or "-", _num(score.get("psi")),
                      f"{w.get('labelled', 0):,}", _num(perf_w.get(metric)) if metric else "-")
    console.print(table)
    flagged = report["windows"][-1].get("flagged_by") if report["windows"] else None
    if flagged:
        console.print("flagged in the current window (scored with a value outside what "
                      "training saw): " + ", ".join(f"{k} {n:,}" for k, n in flagged.items()))
    drivers = report.get("drivers") or {}
    if drivers.get("available") and drivers.get("window"):
        table = Table("column", "training", "current", "current / training",
                      title="what drives the scores: mean |contribution| to the raw score, "
                            f"window {_day(drivers['window']['start'])} vs training")
        for c in drivers["columns"][:10]:
            table.add_row(c["column"], _num(c["reference"]), _num(c["current"]),
                          _num(c["ratio"], 2))
        console.print(table)
    elif drivers.get("available") is False:
        console.print(f"what drives the scores: {drivers['reason']}")
    changes = report.get("changes") or {}
    if changes.get("available") is False:
        console.print(f"change points: {changes['reason']}")
    elif changes:
        console.print(f"change points ({changes['detector']}): score stream "
                      f"{', '.join(_day(t) for t in changes.get('score', [])) or 'none'}; "
                      f"error stream "
                      f"{', '.join(_day(t) for t in changes.get('error', [])) or 'none'}")
    _print_outcome(console, outcome)


def _cell(test: dict) -> str:
    if not test:
        return "-"
    value = _num(test.get("value"))
    return f"[bold red]{value}[/]" if test.get("drifted") else value


def _print_outcome(console: Console, outcome: dict[str, Any] | None) -> None:
    if outcome is None:
        return
    for r in outcome["rules"]:
        mark = "[bold red]FIRED[/]" if r["fired"] else "[green]ok[/]"
        console.print(f"rule {r['rule']!r}: {mark}  {r.get('detail') or ''}")
    action = outcome.get("on_alert")
    if action:
        if action.get("error"):
            console.print(f"on_alert retrain {action['spec']}: [red]{action['error']}[/]")
        else:
            console.print(f"on_alert retrain {action['spec']}: {_short(action.get('result'))}")


def _short(result: Any) -> str:
    text = json.dumps(result, default=str)
    return text if len(text) < 300 else text[:297] + "..."


def _main_metric(report: dict[str, Any]) -> str | None:
    for name in ("roc_auc", "accuracy", "rmse", "mae"):
        if any(name in (w.get("performance") or {}) for w in report.get("windows", [])):
            return name
    return None


# -- HTML ----------------------------------------------------------------------------------

_CSS = """
body{margin:0;background:#f3f4f6;color:#111827;font:14px/1.45 system-ui,-apple-system,
"Segoe UI",sans-serif}
header{background:#111827;color:#f9fafb;padding:22px 32px}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;color:#d1d5db}
main{padding:20px 32px 40px;max-width:1200px}
section{background:#fff;border-radius:10px;padding:16px 20px;margin:0 0 18px;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
h2{font-size:17px;margin:0 0 4px}p.sub{margin:0 0 12px;color:#6b7280}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;
margin-bottom:18px}
.card{background:#fff;border-radius:10px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.06);
border-top:4px solid #10b981}.card.bad{border-top-color:#dc2626}
.card .v{font-size:24px;font-weight:650}.card .l{color:#6b7280;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px}
.feature h3{margin:0;font-size:14px}.feature .stats{color:#6b7280;font-size:12px}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:11px;
font-weight:600;margin-left:6px;background:#d1fae5;color:#065f46}
.badge.bad{background:#fee2e2;color:#991b1b}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e7eb}
th{color:#374151;font-weight:600;background:#f9fafb}td.num{text-align:right;
font-variant-numeric:tabular-nums}tr.bad td{color:#991b1b;font-weight:600}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px}
.charts{display:flex;flex-wrap:wrap;gap:18px}
"""


def to_html(report: dict[str, Any], outcome: dict[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page."""
    model = escape(report["model"])
    ref = report["reference"]
    period = report["period"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>modelport monitor: {model}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{model} <span style='font-weight:400'>version "
        f"{report['version']}</span></h1><p>{escape(_day(period['since']))} to "
        f"{escape(_day(period['until']))}, windows of {escape(period['window'])} · compared "
        f"with the training statistics of version {ref['version']} "
        f"({ref.get('rows') or '?'} rows) · log {escape(report['log'])}</p></header><main>",
    ]
    parts.append(_cards(report))
    if outcome is not None:
        parts.append(_alerts_html(outcome))
    if report.get("note"):
        parts.append(f"<section id='empty'><h2>No data</h2><p>{escape(report['note'])}</p>"
                     "</section></main></body></html>")
        return "".join(parts)
    parts.append(_drift_over_time(report))
    parts.append(_performance_over_time(report))
    parts.append(_distributions(report))
    parts.append(_traffic(report))
    parts.append(_drift_table(report))
    parts.append(_drivers_html(report))
    parts.append(_changes_html(report))
    parts.append("<p style='color:#9ca3af;font-size:12px'>generated by modelport monitor"
                 "</p></main></body></html>")
    return "".join(parts)


def _cards(report: dict[str, Any]) -> str:
    drift = report["drift"]
    features = {t["feature"] for t in drift["features"]}
    drifted = drift["drifted_features"]
    cards = [
        (f"{report['rows']:,}", "predictions logged", False),
        (f"{len(drifted)} of {len(features)}", "features drifted (current window)",
         bool(drifted)),
    ]
    perf = report["performance"]
    metric = next((m for m in ("roc_auc", "accuracy", "rmse") if m in perf["change"]), None)
    if metric:
        c = perf["change"][metric]
        cards.append((f"{c['current']:.3f}", f"{metric} now (training {c['reference']:.3f})",
                      c["worse"] and abs(c["drop"]) > 0.02))
    elif perf["current"]:
        metric = next((m for m in perf["current"] if m != "labelled"), None)
        if metric:
            cards.append((f"{perf['current'][metric]:.3f}", f"{metric} now", False))
    else:
        cards.append(("-", "performance: no labels yet", False))
    current = report["windows"][-1] if report["windows"] else None
    if current:
        cards.append((f"{current['error_rate']:.1%}", "error rate (current window)",
                      current["error_rate"] > 0.01))
    cards.append((f"{report.get('dropped', 0):,}", "log records dropped",
                  report.get("dropped", 0) > 0))
    return "<div class='cards'>" + "".join(
        f"<div class='card{' bad' if bad else ''}'><div class='v'>{escape(v)}</div>"
        f"<div class='l'>{escape(label)}</div></div>" for v, label, bad in cards) + "</div>"


def _labels(report: dict[str, Any]) -> list[str]:
    return [_day(w["start"]) for w in report["windows"]]


def _drift_over_time(report: dict[str, Any]) -> str:
    windows = report["windows"]
    names = [t["feature"] for t in report["drift"]["features"] if t["statistic"] == "psi"]
    series = {n: [(w.get("drift") or {}).get(n, {}).get("psi") for w in windows]
              for n in names}
    drifted = set(report["drift"]["drifted_features"])
    chart = svg.line_chart(_labels(report), series, width=1060, height=300,
                           hlines={"threshold": report["thresholds"]["psi"]},
                           highlight=drifted or None, y_min=0, title="PSI per feature")
    score = {f"prediction {k}": [(w.get("prediction") or {}).get(k, {}).get("psi")
                                 for w in windows] for k in ("score", "label")}
    score = {k: v for k, v in score.items() if any(x is not None for x in v)}
    score_chart = svg.line_chart(_labels(report), score, width=1060, height=220,
                                 hlines={"threshold": report["thresholds"]["psi"]}, y_min=0,
                                 title="PSI of the prediction") if score else ""
    return ("<section id='drift-over-time'><h2>Drift over time</h2><p class='sub'>Population "
            "stability index of each feature per window against the training sample; "
            "features drifted in the current window are drawn thicker. Above the dashed line "
            "a feature counts as drifted.</p>" + chart +
            ("<p class='sub'>The model's output: score and predicted label.</p>" + score_chart
             if score_chart else "") + "</section>")


def _performance_over_time(report: dict[str, Any]) -> str:
    windows = report["windows"]
    perf = report["performance"]
    metrics = [m for m in ("roc_auc", "accuracy", "f1", "log_loss", "rmse", "mae", "r2")
               if any(m in (w.get("performance") or {}) for w in windows)]
    body = ""
    if not metrics:
        body = f"<p>{escape(perf.get('note') or 'no labelled predictions yet')}</p>"
    charts = []
    for m in metrics:
        values = [(w.get("performance") or {}).get(m) for w in windows]
        hl = {"training": perf["reference"][m]} if m in perf["reference"] else None
        charts.append(f"<div><h3 style='margin:6px 0 0;font-size:14px'>{escape(m)}</h3>" +
                      svg.line_chart(_labels(report), {m: values}, width=520, height=220,
                                     hlines=hl, title=m) + "</div>")
    if perf["change"]:
        rows = "".join(
            f"<tr class='{'bad' if c['worse'] else ''}'><td>{escape(k)}</td>"
            f"<td class='num'>{c['reference']:.4f}</td><td class='num'>{c['current']:.4f}</td>"
            f"<td class='num'>{-c['drop']:+.4f}</td></tr>" for k, c in perf["change"].items())
        body += ("<table><tr><th>metric</th><th>training</th><th>latest labelled window</th>"
                 f"<th>change</th></tr>{rows}</table>")
    return ("<section id='performance'><h2>Performance over time</h2><p class='sub'>From "
            "logged predictions joined to the labels that arrived (modelport feedback); the "
            "dashed line is the metric the version was registered with.</p>"
            f"<div class='charts'>{''.join(charts)}</div>{body}</section>")


def _distributions(report: dict[str, Any]) -> str:
    drift = report["drift"]
    w = drift["window"]
    cells = []
    for section in ("features", "prediction"):
        for name, tests in _tests_by_feature(drift[section]).items():
            psi = tests.get("psi")
            if not psi or "bins" not in psi:
                continue
            drifted = any(t["drifted"] for t in tests.values())
            stats = " · ".join(f"{s} {t['value']:.3g}" for s, t in tests.items()
                               if t.get("value") is not None)
            label = name if section == "features" else f"prediction: {name}"
            badge = "<span class='badge bad'>drifted</span>" if drifted else \
                "<span class='badge'>stable</span>"
            cells.append(
                f"<div class='feature'><h3>{escape(label)}{badge}</h3><div class='stats'>"
                f"{escape(stats)}</div>" + svg.paired_bars(psi["bins"], psi["reference"],
                                                          psi["current"], drifted=drifted,
                                                          width=330, title=label) + "</div>")
    return ("<section id='distributions'><h2>Feature distributions</h2><p class='sub'>"
            f"Current window ({escape(_day(w['start']))}, {w['rows']:,} rows) "
            "<span class='legend'><span style='background:#2563eb'></span>current"
            "<span style='background:#9ca3af'></span>training sample</span></p>"
            f"<div class='grid'>{''.join(cells)}</div></section>")


def _traffic(report: dict[str, Any]) -> str:
    windows = report["windows"]
    labels = _labels(report)
    volume = svg.bars(labels, [float(w["volume"]) for w in windows], width=520, height=200,
                      title="predictions per window")
    errors = svg.line_chart(labels, {"error rate": [w["error_rate"] for w in windows]},
                            width=520, height=200, y_min=0, title="error rate")
    charts = [f"<div><h3 style='margin:6px 0 0;font-size:14px'>predictions (estimated from "
              f"the sample)</h3>{volume}</div>",
              f"<div><h3 style='margin:6px 0 0;font-size:14px'>error rate</h3>{errors}</div>"]
    if any(w["latency_ms"] for w in windows):
        lat = {q: [w["latency_ms"].get(q) for w in windows] for q in ("p50", "p95", "p99")}
        charts.append("<div><h3 style='margin:6px 0 0;font-size:14px'>latency (ms)</h3>" +
                      svg.line_chart(labels, lat, width=520, height=200, y_min=0,
                                     title="latency") + "</div>")
    return ("<section id='traffic'><h2>Volume, errors and latency</h2>"
            f"<div class='charts'>{''.join(charts)}</div></section>")


def _drift_table(report: dict[str, Any]) -> str:
    rows = []
    for t in report["drift"]["features"] + report["drift"]["prediction"]:
        extra = t.get("p_value", t.get("chi2"))
        rows.append(f"<tr class='{'bad' if t['drifted'] else ''}'><td>{escape(t['feature'])}"
                    f"</td><td>{escape(t['kind'])}</td><td>{escape(t['statistic'])}</td>"
                    f"<td class='num'>{_num(t['value'])}</td><td class='num'>{t['threshold']}"
                    f"</td><td class='num'>{_num(extra)}</td><td>"
                    f"{'yes' if t['drifted'] else 'no'}</td></tr>")
    return ("<section id='drift-table'><h2>Drift tests, current window</h2><table><tr>"
            "<th>feature</th><th>kind</th><th>statistic</th><th>value</th><th>threshold</th>"
            "<th>p-value / χ²</th><th>drifted</th></tr>" + "".join(rows) +
            "</table></section>")


def _drivers_html(report: dict[str, Any]) -> str:
    drivers = report.get("drivers") or {}
    if not drivers.get("available"):
        reason = drivers.get("reason", "not measured")
        return ("<section id='drivers'><h2>What drives the scores</h2><p class='sub'>"
                f"{escape(reason)}</p></section>")
    columns = drivers["columns"]
    top = [c["column"] for c in columns[:6]]
    series = {name: [(w.get("drivers") or {}).get(name) for w in report["windows"]]
              for name in top}
    chart = svg.line_chart(_labels(report), series, width=1060, height=260, y_min=0,
                           title="mean |contribution| per window")
    rows = "".join(
        f"<tr><td>{escape(c['column'])}</td><td class='num'>{_num(c['reference'])}</td>"
        f"<td class='num'>{_num(c['current'])}</td><td class='num'>{_num(c['ratio'], 2)}"
        "</td></tr>" for c in columns)
    return ("<section id='drivers'><h2>What drives the scores</h2><p class='sub'>Each input "
            "column's mean absolute contribution to the "
            f"{escape(drivers['space'])}, over each window's logged rows and over the "
            "training sample, the largest now first.</p>" + chart +
            "<table><tr><th>column</th><th>training</th><th>current</th>"
            "<th>current / training</th></tr>" + rows + "</table></section>")


def _changes_html(report: dict[str, Any]) -> str:
    changes = report.get("changes") or {}
    if not changes:
        return ""
    if changes.get("available") is False:
        body = f"<p>{escape(changes['reason'])}</p>"
    else:
        body = (f"<p>Detector: {escape(changes['detector'])}. Score stream: "
                f"{escape(', '.join(_day(t) for t in changes.get('score', [])) or 'no change')}"
                ". Error stream: "
                f"{escape(', '.join(_day(t) for t in changes.get('error', [])) or 'no change')}"
                ".</p>")
    return f"<section id='changes'><h2>Change points</h2>{body}</section>"


def _alerts_html(outcome: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr class='{'bad' if r['fired'] else ''}'><td>{escape(r['rule'])}</td>"
        f"<td>{'fired' if r['fired'] else 'ok'}</td><td>{escape(str(r.get('detail') or ''))}"
        "</td></tr>" for r in outcome["rules"])
    action = outcome.get("on_alert")
    text = ""
    if action:
        text = (f"<p>on_alert: retrain {escape(action['spec'])}: "
                f"{escape(action.get('error') or _short(action.get('result')))}</p>")
    return ("<section id='alerts'><h2>Alert rules</h2><table><tr><th>rule</th><th>status</th>"
            f"<th>detail</th></tr>{rows}</table>{text}</section>")

"""What each page of the console shows, read from the registry, the prediction log and the
live processes' heartbeats: plain data for the templates (:mod:`modelport.ui.templates`).

Nothing here writes but :func:`promote` and :func:`roll_back`, which go through the
registry's own alias moves, so the console's changes land in the alias history exactly as
``modelport models alias`` and ``modelport models rollback`` record them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError
from modelport.registry import heartbeats
from modelport.uri import ModelURI

if TYPE_CHECKING:
    from modelport.registry import Artefact, Registry, Version

log = logging.getLogger("modelport.ui")


@dataclass
class Sources:
    """Where the console reads from besides the registry: the prediction log and the alert
    rules files (``--log``, ``--check``, and the files of ``check`` schedules)."""

    log_url: str | None = None
    checks: list[Path] = field(default_factory=list)
    window: str = "1d"
    stale_seconds: float = heartbeats.STALE_SECONDS


# -- models ------------------------------------------------------------------------------

def parse_tag(text: str) -> dict[str, str]:
    """``key=value`` (or a bare key, matching any value is not supported: say so)."""
    text = text.strip()
    if not text:
        return {}
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"tag {text!r}: search tags as KEY=VALUE, e.g. team=risk")
    return {key.strip(): value.strip()}


def models(registry: Registry, q: str = "", tag: str = "") -> list[dict[str, Any]]:
    """Models whose name contains ``q`` and that have a version tagged ``tag``
    (``KEY=VALUE``), each with its versions, aliases and latest tags."""
    q = _printable(q)
    tags = parse_tag(_printable(tag))
    found = registry.search(name=q or None, tags=tags or None)
    by_model: dict[str, list] = {}
    for v in found:
        by_model.setdefault(v.name, []).append(v)
    listed = {m["name"]: m for m in registry.list_models()}
    out = []
    for name in sorted(by_model):
        info = listed.get(name, {})
        latest = by_model[name][-1]
        out.append({"name": name, "versions": info.get("versions", len(by_model[name])),
                    "latest": info.get("latest_version"), "aliases": info.get("aliases", {}),
                    "task": latest.task, "tags": latest.tags,
                    "matched": [v.version for v in by_model[name]]})
    if not q.strip() and not tags:  # models without versions yet are models too
        for name, info in listed.items():
            if name not in by_model:
                out.append({"name": name, "versions": 0, "latest": None,
                            "aliases": info["aliases"], "task": "-", "tags": {},
                            "matched": []})
        out.sort(key=lambda m: m["name"])
    return out


def processes(registry: Registry, sources: Sources, model: str | None = None) -> list[dict[str, Any]]:
    """The heartbeats (of ``model``, or all), each flagged ``behind`` when the URI it
    follows names a newer version than it serves, and ``stale`` when not seen for
    ``sources.stale_seconds``; ``next`` says what it will do next."""
    rows = heartbeats.list(registry, model)
    targets: dict[str, int | None] = {}
    for p in rows:
        uri = p["uri"]
        if uri not in targets:
            try:
                targets[uri] = registry.resolve(uri)
            except Exception:  # noqa: BLE001 - a deleted model or alias: shown as such
                targets[uri] = None
        target = targets[uri]
        p["target"] = target
        p["stale"] = (p["seen_seconds_ago"] or 0) > sources.stale_seconds
        p["behind"] = target is not None and p["version"] is not None and \
            p["version"] != target
        if p["stale"]:
            p["next"] = f"not seen for {p['seen_seconds_ago']:.0f} s: stopped or cut off"
        elif target is None:
            p["next"] = f"{uri} names nothing now: keeps serving version {p['version']}"
        elif p["behind"]:
            p["next"] = f"loads version {target} at its next poll (serves {p['version']})"
        else:
            p["next"] = f"keeps serving version {p['version']}"
    return rows


def model_page(registry: Registry, sources: Sources, name: str, window: str | None = None
               ) -> dict[str, Any]:
    """A model: its versions, aliases with the processes following each, the full alias
    history, retrain decisions and alerts, and monitoring when a prediction log is known."""
    versions = registry.versions(name)
    aliases = registry.aliases(name)
    live = processes(registry, sources, name)
    followers: dict[str, list] = {a: [] for a in aliases}
    for p in live:
        u = ModelURI.parse(p["uri"])
        if u.alias in followers:
            followers[u.alias].append(p)
    events = registry.events(name)
    page = {
        "name": name, "versions": [v.to_dict() for v in reversed(versions)],
        "aliases": dict(sorted(aliases.items())), "followers": followers,
        "history": list(reversed(registry.alias_history(name))), "processes": live,
        "decisions": [e for e in reversed(events) if e["kind"] != "alert"],
        "alerts_recorded": [e for e in reversed(events) if e["kind"] == "alert"],
        "monitor": None,
    }
    if versions:
        page["monitor"] = monitoring(registry, sources, name, window or sources.window)
    return page


# -- a version and two side by side ----------------------------------------------------------

def version_page(registry: Registry, name: str, version: int,
                 cache: dict[tuple[str, int, Any], list[tuple[str, float]] | str] | None = None
                 ) -> dict[str, Any]:
    """One version: everything it records, the artefact each purpose will serve and why,
    and the mean absolute reason-code contribution of each input over its stored sample
    when the model can be explained (kept in ``cache``: a registered version never changes)."""
    from modelport.scoring.choice import describe

    v = registry.get(ModelURI(name, version))
    data = v.to_dict()
    data["serving"] = describe(v)
    key, cache = (v.name, v.version, v.created_at), {} if cache is None else cache
    if key not in cache:
        if len(cache) >= 256:
            cache.pop(next(iter(cache)))
        cache[key] = importance(registry, v)
    data["importance"] = cache[key]
    data["decisions"] = [e for e in registry.events(name)
                         if e["kind"] != "alert" and version in _versions_named(e)]
    return data


def _versions_named(event: dict[str, Any]) -> set[int]:
    found = set()
    for key in ("version", "champion", "challenger"):
        value = event.get(key)
        if isinstance(value, dict):
            value = value.get("version")
        if isinstance(value, int):
            found.add(value)
    return found


def importance(registry: Registry, v: Version, rows: int = 200) -> list[tuple[str, float]] | str:
    """Columns by mean absolute contribution to the raw score over the first ``rows`` of
    the version's sample, largest first; or the reason there is none."""
    if not v.sample_sha256:
        result: list[tuple[str, float]] | str = "registered without a sample"
    else:
        try:
            fmt = "compiled" if "compiled" in v.accepted_formats() else None
            predictor = registry.load(v, format=fmt)
            sample = registry.sample(v).head(rows)
            n = len(predictor.signature.names)
            found = predictor.explain(sample, top=n)
            mean = found.assign(size=found["contribution"].abs()).groupby("column")["size"]
            result = sorted(((str(c), float(x)) for c, x in mean.sum().items()),
                            key=lambda t: -t[1])
            result = [(c, x / len(sample)) for c, x in result]
        except UserError as exc:
            result = str(exc)
        except Exception as exc:  # noqa: BLE001 - the page shows the rest all the same
            result = f"{type(exc).__name__}: {exc}"[:300]
    return result


def compare(registry: Registry, name: str, a: int, b: int) -> dict[str, Any]:
    """Versions ``a`` and ``b`` side by side: metrics, signature changes (new and dropped
    columns, moved ranges, new and dropped categories, changed kinds), each format's
    parity and latency."""
    va, vb = (registry.get(ModelURI(name, n)) for n in (a, b))
    metrics = sorted(set(va.metrics) | set(vb.metrics))
    cols_a = {c["name"]: c for c in va.signature.get("inputs", [])}
    cols_b = {c["name"]: c for c in vb.signature.get("inputs", [])}
    changes: list[dict[str, str]] = []
    for col in cols_b:
        if col not in cols_a:
            changes.append({"column": col, "change": "new column",
                            "detail": _describe_column(cols_b[col])})
    for col in cols_a:
        if col not in cols_b:
            changes.append({"column": col, "change": "dropped column",
                            "detail": _describe_column(cols_a[col])})
    for col in cols_a:
        if col not in cols_b:
            continue
        ca, cb = cols_a[col], cols_b[col]
        if ca.get("kind") != cb.get("kind") or ca.get("dtype") != cb.get("dtype"):
            changes.append({"column": col, "change": "type changed",
                            "detail": f"{ca.get('kind')} {ca.get('dtype')} -> "
                                      f"{cb.get('kind')} {cb.get('dtype')}"})
        if (ca.get("min"), ca.get("max")) != (cb.get("min"), cb.get("max")) and \
                cb.get("kind") != "categorical":
            changes.append({"column": col, "change": "range moved",
                            "detail": f"{_num(ca.get('min'))} .. {_num(ca.get('max'))} -> "
                                      f"{_num(cb.get('min'))} .. {_num(cb.get('max'))}"})
        new = [c for c in cb.get("categories") or [] if c not in (ca.get("categories") or [])]
        gone = [c for c in ca.get("categories") or [] if c not in (cb.get("categories") or [])]
        if new:
            changes.append({"column": col, "change": "new categories",
                            "detail": ", ".join(map(str, new))})
        if gone:
            changes.append({"column": col, "change": "dropped categories",
                            "detail": ", ".join(map(str, gone))})
    formats = sorted({x.format for x in va.artefacts} | {x.format for x in vb.artefacts})
    return {
        "name": name, "a": va.to_dict(), "b": vb.to_dict(),
        "metrics": [(m, va.metrics.get(m), vb.metrics.get(m)) for m in metrics],
        "changes": changes,
        "formats": [(f, _art(va.artefact(f)), _art(vb.artefact(f))) for f in formats],
        "versions": [v.version for v in registry.versions(name)],
    }


def _art(a: Artefact | None) -> dict[str, Any] | None:
    return None if a is None else {"status": a.status, **(a.parity or {}), "size": a.size}


def _describe_column(c: dict[str, Any]) -> str:
    if c.get("kind") == "categorical":
        return f"categorical: {', '.join(map(str, (c.get('categories') or [])[:8]))}"
    return f"{c.get('dtype')} {_num(c.get('min'))} .. {_num(c.get('max'))}"


def _num(x: object) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


# -- acting --------------------------------------------------------------------------------

def _printable(text: str) -> str:
    """``text`` with control characters (a NUL, which PostgreSQL refuses) as spaces."""
    return "".join(ch if ch.isprintable() else " " for ch in text or "").strip()


def _reason(reason: str) -> str:
    reason = _printable(reason)
    if not reason:
        raise UserError("say why in the reason field: it is kept in the alias history")
    return reason[:500]


def promote(registry: Registry, name: str, alias: str, version: str, reason: str, by: str) -> int:
    """Point ``name@alias`` at ``version``, as ``modelport models alias`` does."""
    return registry.set_alias(name, version, alias.strip(), reason=_reason(reason),
                              by=by).version


def roll_back(registry: Registry, name: str, alias: str, reason: str, by: str) -> int:
    """Move ``name@alias`` back, as ``modelport models rollback`` does."""
    return registry.rollback(name, alias.strip(), reason=_reason(reason), by=by).version


# -- monitoring ----------------------------------------------------------------------------

def rules_for(registry: Registry, sources: Sources, name: str) -> list[dict[str, Any]]:
    """The alert rules files that watch model ``name``: ``--check`` files and the files of
    ``check`` schedules, each loaded (``model``, ``log``, ``rules``, ...)."""
    from modelport.monitor.alerts import load_rules_file

    paths = list(sources.checks)
    try:
        for row, _ in registry.schedules_with_last_run():
            if row["kind"] == "check":
                paths.append(Path(row["path"]))
    except Exception as exc:  # noqa: BLE001 - monitoring still shows without the rules
        log.warning("cannot read the schedules: %s", exc)
    found, seen = [], set()
    for path in paths:
        if str(path) in seen:
            continue
        seen.add(str(path))
        try:
            config = load_rules_file(path)
        except Exception as exc:  # noqa: BLE001 - one broken file does not hide the others
            found.append({"path": str(path), "error": str(exc), "rules": []})
            continue
        if ModelURI.parse(str(config.get("model"))).name == name:
            found.append({"path": str(path), **config})
    return found


def monitoring(registry: Registry, sources: Sources, name: str, window: str) -> dict[str, Any]:
    """The figures of ``modelport monitor`` for the model over ``window``-long windows, its
    alert rules evaluated on them, and the columns ordered drifting first."""
    from modelport.monitor.alerts import evaluate
    from modelport.monitor.analysis import analyse

    files = rules_for(registry, sources, name)
    log_url = sources.log_url or next((f.get("log") for f in files if f.get("log")), None)
    if not log_url:
        return {"note": "no prediction log: start the console with --log URL (or set "
                        "MODELPORT_LOG) to see drift, performance, volumes and latency"}
    try:
        report = analyse(name, log_url, window=window, detector=None, registry=registry)
    except UserError as exc:
        return {"note": str(exc)}
    rules = []
    for f in files:
        if f.get("error"):
            rules.append({"file": f["path"], "rule": "-", "fired": None, "detail": f["error"]})
            continue
        try:
            for r in evaluate(f["rules"], report):
                rules.append({"file": f["path"], **r})
        except UserError as exc:
            rules.append({"file": f["path"], "rule": "-", "fired": None, "detail": str(exc)})
    drifted = report["drift"]["drifted_features"]
    tests: dict[str, list[dict]] = {}
    for t in report["drift"]["features"]:
        tests.setdefault(t["feature"], []).append(t)
    order = list(drifted) + [c for c in tests if c not in drifted]
    columns = [{"name": c, "drifted": c in drifted, "tests": tests[c]} for c in order]
    return {"report": report, "rules": rules, "columns": columns, "window": window,
            "charts": _charts(report, order, set(drifted))}


def _charts(report: dict[str, Any], order: list[str], drifted: set[str]
            ) -> dict[str, tuple[str, str]]:
    """The report's figures as inline SVG (:mod:`modelport.monitor.svg`): name -> (title,
    SVG)."""
    from modelport.monitor import svg

    windows = report.get("windows") or []
    if not windows:
        return {}
    labels = [w["start"][5:16].replace("T", " ") for w in windows]
    charts: dict[str, Any] = {}
    series = {c: [(w.get("drift") or {}).get(c, {}).get("psi") for w in windows]
              for c in order}
    charts["drift"] = svg.line_chart(labels, series, width=900, height=260,
                                     hlines={"threshold": report["thresholds"]["psi"]},
                                     highlight=drifted or None, y_min=0,
                                     title="PSI per column")
    score = [(w.get("prediction") or {}).get("score", {}).get("psi") for w in windows]
    if any(x is not None for x in score):
        charts["prediction"] = svg.line_chart(
            labels, {"prediction psi": score}, width=440, height=200, y_min=0,
            hlines={"threshold": report["thresholds"]["psi"]}, title="prediction drift")
    charts["volume"] = svg.bars(labels, [float(w["volume"]) for w in windows], width=440,
                                height=200, title="predictions per window")
    charts["errors"] = svg.line_chart(labels, {"error rate": [w["error_rate"] for w in windows]},
                                      width=440, height=200, y_min=0, title="error rate")
    if any(w["latency_ms"] for w in windows):
        charts["latency"] = svg.line_chart(
            labels, {q: [w["latency_ms"].get(q) for w in windows] for q in ("p50", "p95", "p99")},
            width=440, height=200, y_min=0, title="latency ms")
    perf = [m for m in ("roc_auc", "accuracy", "rmse", "mae")
            if any(m in (w.get("performance") or {}) for w in windows)]
    if perf:
        m = perf[0]
        ref = report["performance"]["reference"]
        charts["performance"] = svg.line_chart(
            labels, {m: [(w.get("performance") or {}).get(m) for w in windows]}, width=440,
            height=200, hlines={"training": ref[m]} if m in ref else None, title=m)
    titles = {"drift": "PSI per column (drifting thicker)", "prediction": "Prediction drift (PSI)",
              "volume": "Predictions per window", "errors": "Error rate",
              "latency": "Latency (ms)", "performance": "Performance against training"}
    return {k: (titles[k], v) for k, v in charts.items()}


# -- schedules -------------------------------------------------------------------------------

def schedules(registry: Registry) -> list[dict[str, Any]]:
    """Each schedule with its next run and its latest runs, decisions included."""
    out = []
    for row, _ in registry.schedules_with_last_run():
        runs = []
        for r in registry.schedule_runs(row["name"], 10):
            result = r["result"] or {}
            decision = result.get("decision") if isinstance(result, dict) else None
            if decision is None and isinstance(result, dict) and "fired" in result:
                decision = "alert fired" if result["fired"] else "no alert"
            runs.append({"due_at": _iso(r["due_at"]), "status": r["status"],
                         "finished_at": _iso(r["finished_at"]), "exit_code": r["exit_code"],
                         "decision": decision or "-",
                         "reason": _why(result)})
        out.append({"name": row["name"], "kind": row["kind"], "path": row["path"],
                    "cron": row["cron"], "next_run_at": _iso(row["next_run_at"]),
                    "missed": row["missed"], "runs": runs})
    return out


def _why(result: Any) -> str:
    if not isinstance(result, dict):
        return ""
    why = result.get("reason") or result.get("error") or ""
    if isinstance(why, dict):
        why = why.get("message") or str(why)
    return str(why)


def _iso(value: datetime | None) -> str | None:
    from datetime import UTC

    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()

"""Alert rules over a monitoring report, and what to do when one fires.

A rules file names the model, the log and the rules, and optionally an action::

    model: churn@production
    log: sqlite:///logs.db#predictions
    window: 1d                  # optional (default 1d); also since, until, reference
    thresholds: {psi: 0.2}      # optional: what counts as drift in the report
    rules:
      - psi > 0.2               # on any feature
      - ks > 0.15 on tenure_months, monthly_charges
      - prediction psi > 0.25   # the score (and predicted label) distribution
      - auc drop > 0.03         # versus the reference's registered roc_auc
      - accuracy < 0.7
      - error_rate > 0.01
      - latency_p99 > 250       # milliseconds
      - rows < 100              # predictions logged in the current window
      - dropped > 0             # records the loggers had to drop
      - score_changes > 0       # change points River found in the score stream
    on_alert: retrain churn.yaml   # a retraining spec, relative to this file

A rule is ``[prediction] STATISTIC [drop|rise] OP NUMBER [on FEATURE, ...]`` with OP one of
``> >= < <= ==``. Drift statistics (``psi``, ``ks``, ``chi2_p``) look at every feature
unless ``on`` names some, in the current window; metrics (``roc_auc`` or ``auc``,
``accuracy``, ``f1``, ``log_loss``, ``rmse``, ``mae``, ``r2``) at the latest window with
enough labels, ``drop`` meaning reference minus current and ``rise`` current minus
reference; ``error_rate``, ``flagged_rate`` (rows scored with a value outside what training
saw), ``latency_p50/p95/p99`` and ``rows`` at the current window;
``drifted_features`` counts the features called drifted. A rule with nothing to judge
(no labels yet) does not fire and says so.

:func:`run_check_file` is what ``modelport monitor --check`` and the embedded scheduler
call: it evaluates the file, records an ``alert`` event on the model when a rule fires,
and then runs ``on_alert`` -- :func:`modelport.train.retrain.retrain` on the spec, which
trains a challenger on fresh data and promotes it only if it beats the champion.
"""

from __future__ import annotations

import logging
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError

if TYPE_CHECKING:
    from modelport.registry import Registry

log = logging.getLogger("modelport.monitor")

#: exit code of ``modelport monitor --check`` when a rule fires (1 is a crash, 2 a user
#: error)
ALERT_EXIT_CODE = 3
KEYS = ("model", "log", "window", "since", "until", "reference", "thresholds", "rules",
        "on_alert", "detector")
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
        "==": operator.eq}
_RULE = re.compile(
    r"^\s*(?:(?P<prediction>prediction|score)\s+)?(?P<stat>[a-z_][a-z0-9_]*)"
    r"(?:\s+(?P<change>drop|rise))?\s*(?P<op>>=|<=|==|>|<)\s*(?P<value>-?\d+(?:\.\d*)?(?:e-?\d+)?)"
    r"(?:\s+on\s+(?P<on>.+?))?\s*$", re.I)
DRIFT = ("psi", "ks", "chi2_p")
METRICS = ("roc_auc", "accuracy", "f1", "log_loss", "rmse", "mae", "r2")
ALIASES = {"auc": "roc_auc", "p99": "latency_p99", "p95": "latency_p95", "p50": "latency_p50"}
OPERATIONAL = ("error_rate", "flagged_rate", "latency_p50", "latency_p95", "latency_p99", "rows",
               "volume", "dropped", "drifted_features", "score_changes", "error_changes")


@dataclass
class Rule:
    """One parsed rule."""

    text: str
    statistic: str
    op: str
    value: float
    change: str | None = None
    prediction: bool = False
    on: list[str] | None = None

    def holds(self, x: float) -> bool:
        return bool(_OPS[self.op](x, self.value))


def parse_rule(text: str) -> Rule:
    """``"auc drop > 0.03"`` -> :class:`Rule`, or a UserError saying how to write one."""
    m = _RULE.match(str(text))
    if not m:
        raise UserError(f"rule {text!r}: write STATISTIC OP NUMBER, e.g. 'psi > 0.2', "
                        "'auc drop > 0.03', 'ks > 0.1 on tenure_months', 'error_rate > 0.01'")
    stat = ALIASES.get(m["stat"].lower(), m["stat"].lower())
    known = DRIFT + METRICS + OPERATIONAL
    if stat not in known:
        raise UserError(f"rule {text!r}: unknown statistic {m['stat']!r}; use one of "
                        f"{', '.join(known)} (auc means roc_auc)")
    if m["change"] and stat not in METRICS:
        raise UserError(f"rule {text!r}: drop and rise compare a metric ({', '.join(METRICS)}) "
                        "with the reference")
    if (m["prediction"] or m["on"]) and stat not in DRIFT:
        raise UserError(f"rule {text!r}: 'prediction' and 'on FEATURE' go with a drift "
                        f"statistic ({', '.join(DRIFT)})")
    on = [f.strip() for f in m["on"].split(",")] if m["on"] else None
    if on and on in (["any feature"], ["any"]):
        on = None
    return Rule(text=str(text).strip(), statistic=stat, op=m["op"], value=float(m["value"]),
                change=(m["change"] or "").lower() or None, prediction=bool(m["prediction"]),
                on=on)


def evaluate(rules: list[Rule], report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each rule against ``report`` (from :func:`modelport.monitor.analysis.analyse`):
    ``{rule, fired, value, detail}``."""
    return [_evaluate(rule, report) for rule in rules]


def _evaluate(rule: Rule, report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": rule.text, "fired": False, "value": None}
    stat = rule.statistic
    if stat in DRIFT:
        tests = report["drift"]["prediction" if rule.prediction else "features"]
        known = {t["feature"] for t in tests}
        for name in rule.on or []:
            if name not in known and tests:
                raise UserError(f"rule {rule.text!r}: {report['model']} has no feature "
                                f"{name!r}; its features: {', '.join(sorted(known))}")
        hits = [t for t in tests if t["statistic"] == stat and t["value"] is not None
                and (rule.on is None or t["feature"] in rule.on)]
        if not hits:
            kinds = {t["feature"]: t["kind"] for t in tests}
            out["detail"] = "no drift figures in the period" if not tests else (
                f"{stat} is not computed for " + ", ".join(
                    f"{name} ({kinds[name]})" for name in (rule.on or sorted(kinds)))
                + "; numbers get psi and ks, categories psi and chi2_p")
            return out
        fired = [t for t in hits if rule.holds(t["value"])]
        worst = max(hits, key=lambda t: t["value"] if rule.op.startswith(">") else -t["value"])
        out["value"] = worst["value"]
        out["fired"] = bool(fired)
        out["features"] = [t["feature"] for t in fired]
        out["detail"] = (", ".join(f"{t['feature']} {stat}={t['value']:.4g}" for t in fired)
                         if fired else f"worst {worst['feature']} {stat}={worst['value']:.4g}")
        return out
    if stat in METRICS:
        perf = report["performance"]
        if rule.change:
            change = perf["change"].get(stat)
            if change is None:
                out["detail"] = (f"no {stat} to compare: " + (
                    "the reference has none" if stat not in perf["reference"] else
                    perf.get("note", "not enough labels")))
                return out
            x = change["drop"] if rule.change == "drop" else -change["drop"]
            out["detail"] = f"{stat} {change['reference']:.4g} -> {change['current']:.4g}"
        else:
            x = perf["current"].get(stat)
            if x is None:
                out["detail"] = perf.get("note", f"no {stat} in the latest labelled window")
                return out
            out["detail"] = f"{stat} {x:.4g}"
        out["value"] = round(float(x), 6)
        out["fired"] = rule.holds(float(x))
        return out
    current = _current_window(report)
    if stat == "dropped":
        x = report.get("dropped", 0)
    elif stat in ("score_changes", "error_changes"):
        changes = report.get("changes") or {}
        x = len(changes.get(stat.split("_")[0], []))
    elif current is None:
        out["detail"] = "no predictions logged in the period"
        return out
    elif stat == "drifted_features":
        x = len(report["drift"]["drifted_features"])
    elif stat.startswith("latency_"):
        x = current["latency_ms"].get(stat.split("_")[1])
        if x is None:
            out["detail"] = "no latency logged (batch and trigger scoring record none)"
            return out
    else:
        x = current[stat]
    out["value"] = x
    out["fired"] = rule.holds(float(x))
    out["detail"] = f"{stat} {x:.4g}" if isinstance(x, float) else f"{stat} {x}"
    return out


def _current_window(report: dict[str, Any]) -> dict[str, Any] | None:
    windows = report.get("windows") or []
    return windows[-1] if windows else None


# -- rules files ---------------------------------------------------------------------------

def load_rules_file(path: str | Path) -> dict[str, Any]:
    """Read and check a rules file; the rules are parsed, paths made absolute."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"cannot read the rules file {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a rules file is a mapping with model, log and rules")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}; a rules file takes "
                        f"{', '.join(KEYS)}")
    for key in ("model", "log", "rules"):
        if not raw.get(key):
            raise UserError(f"{path}: {key} is missing (e.g. model: churn@production, "
                            "log: sqlite:///logs.db#predictions, rules: [psi > 0.2])")
    rules = raw["rules"] if isinstance(raw["rules"], list) else [raw["rules"]]
    parsed = []
    for r in rules:
        try:
            parsed.append(parse_rule(r))
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    action = _on_alert(raw.get("on_alert"), path)
    log_url = str(raw["log"])
    if log_url.startswith("sqlite:///") and not log_url.startswith("sqlite:////"):
        # a relative SQLite file is relative to the rules file, as spec paths are
        rel = log_url[len("sqlite:///"):]
        log_url = f"sqlite:///{(path.parent / rel).resolve()}"
    return {**raw, "log": log_url, "rules": parsed, "on_alert": action, "path": str(path)}


def _on_alert(value: Any, path: Path) -> dict[str, Any] | None:
    if not value:
        return None
    if isinstance(value, dict) and set(value) == {"retrain"}:
        spec = value["retrain"]
    elif isinstance(value, str) and value.split(None, 1)[0] == "retrain" and \
            len(value.split(None, 1)) == 2:
        spec = value.split(None, 1)[1].strip()
    else:
        raise UserError(f"{path}: on_alert {value!r}: write 'on_alert: retrain SPEC.yaml'")
    spec_path = (path.parent / spec).resolve()
    if not spec_path.is_file():
        raise UserError(f"{path}: on_alert names the spec {spec}, which does not exist at "
                        f"{spec_path}")
    return {"action": "retrain", "spec": str(spec_path)}


def check(config: dict[str, Any], registry: Registry | None = None,
          act: bool = True) -> dict[str, Any]:
    """Analyse the log a loaded rules file names, evaluate its rules and, when one fires
    and ``act``, run its ``on_alert``. Returns the outcome (see :func:`run_check_file`)."""
    from modelport.monitor.analysis import analyse
    from modelport.monitor.drift import parse_thresholds

    report = analyse(
        str(config["model"]), config["log"], window=str(config.get("window") or "1d"),
        since=config.get("since"), until=config.get("until"),
        reference=str(config.get("reference") or "training"),
        thresholds=parse_thresholds(config.get("thresholds")),
        detector=config.get("detector", "adwin"), registry=registry)
    results = evaluate(config["rules"], report)
    fired = [r for r in results if r["fired"]]
    outcome: dict[str, Any] = {
        "model": report["model"], "version": report["version"], "fired": bool(fired),
        "alerts": fired, "rules": results, "exit_code": ALERT_EXIT_CODE if fired else 0,
        "on_alert": None, "report": report,
    }
    if fired:
        _record(report, fired, registry)
        action = config.get("on_alert")
        if action and act:
            outcome["on_alert"] = _run_action(action)
    return outcome


def run_check_file(path: str | Path) -> dict[str, Any]:
    """Evaluate a rules file and act on it; what the scheduler and ``--check`` call.

    Returns ``{"model", "version", "fired", "alerts" (the rules that fired, each with
    its value and detail), "rules" (all of them), "exit_code" (0, or 3 when a rule
    fired), "on_alert" (None, or the action run: ``{"action": "retrain", "spec",
    "result"}`` or ``{..., "error"}``), "report" (the full monitoring report)}``.
    """
    return check(load_rules_file(path))


def _record(report: dict[str, Any], fired: list[dict[str, Any]],
            registry: Registry | None) -> None:
    try:
        from modelport.registry import Registry

        reg = registry or Registry()
        reg.record_event(report["name"], "alert", {
            "version": report["version"], "rules": [f["rule"] for f in fired],
            "details": [f.get("detail") for f in fired]})
    except Exception as exc:  # noqa: BLE001 - the alert itself must still be reported
        log.warning("could not record the alert on %s: %s", report["name"], exc)


def _run_action(action: dict[str, Any]) -> dict[str, Any]:
    """Run ``on_alert``: retrain from the spec (trains a challenger on fresh data and
    promotes it only if it beats the champion)."""
    out = dict(action)
    try:
        from modelport.train.retrain import retrain
    except ImportError:
        out["error"] = ("retraining is not available in this installation "
                        "(modelport.train.retrain is missing)")
        return out
    log.info("alert: retraining from %s", action["spec"])
    try:
        result = retrain(action["spec"])
    except UserError as exc:
        out["error"] = str(exc)
        return out
    out["result"] = _plain(result)
    return out


def _plain(result: Any) -> Any:
    """A retraining result as JSON-ready data (dataclasses field by field, objects through
    their ``to_dict``/``as_dict``)."""
    from dataclasses import fields, is_dataclass

    if result is None or isinstance(result, str | int | float | bool):
        return result
    if isinstance(result, dict):
        return {str(k): _plain(v) for k, v in result.items()}
    if isinstance(result, list | tuple):
        return [_plain(v) for v in result]
    for attr in ("to_dict", "as_dict"):
        fn = getattr(result, attr, None)
        if callable(fn):
            return fn()
    if is_dataclass(result):
        return {f.name: _plain(getattr(result, f.name)) for f in fields(result)
                if f.repr}
    return repr(result)

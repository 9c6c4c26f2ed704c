"""The console's pages as Jinja2 templates, autoescaped: every name, tag, reason and
category reaches the HTML escaped. Styles are inline and charts are inline SVG drawn on the
server, so a page needs no network and no JavaScript."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    import jinja2

_CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;
color:#111827;background:#f9fafb}header{display:flex;align-items:center;gap:22px;padding:10px 24px;
background:#111827;color:#f9fafb}header a{color:#f9fafb;text-decoration:none}.brand{font-weight:700;
font-size:16px}nav a{margin-right:16px;opacity:.85}nav a:hover{opacity:1}.who{margin-left:auto;
font-size:13px;opacity:.9}.who a{text-decoration:underline}main{padding:18px 24px;max-width:1200px}
h1{font-size:22px;margin:4px 0 12px}h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #e5e7eb;
padding-bottom:4px}h3{font-size:14px;margin:12px 0 4px}table{border-collapse:collapse;background:#fff;
margin:6px 0 10px;min-width:40%}th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f3f4f6;font-weight:600}td.num{text-align:right;
font-variant-numeric:tabular-nums}tr.bad td{background:#fef2f2;color:#991b1b}tr.warn td{background:#fffbeb}
.badge{display:inline-block;border-radius:9px;padding:0 7px;font-size:12px;background:#e5e7eb;
margin-left:4px}.badge.bad{background:#fee2e2;color:#991b1b}.badge.ok{background:#dcfce7;color:#166534}
.badge.warn{background:#fef3c7;color:#92400e}form.inline{display:inline}form.act{background:#fff;
border:1px solid #e5e7eb;padding:8px 10px;margin:6px 0;display:flex;gap:8px;align-items:center;
flex-wrap:wrap}input,select,button{font:inherit;padding:3px 6px}button{cursor:pointer;
background:#2563eb;color:#fff;border:0;border-radius:4px;padding:4px 10px}header button{background:#374151}
.muted{color:#6b7280}.msg{padding:8px 12px;border-radius:4px;background:#fee2e2;color:#991b1b}
.charts{display:flex;flex-wrap:wrap;gap:14px}.charts>div{background:#fff;border:1px solid #e5e7eb;
padding:6px}code{background:#f3f4f6;padding:0 3px;border-radius:3px}
"""

_BASE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · modelport</title><style>""" + _CSS + """</style></head><body>
<header><a class="brand" href="{{ base }}/">modelport</a><nav><a href="{{ base }}/">Models</a>
<a href="{{ base }}/serving">Serving</a><a href="{{ base }}/schedules">Schedules</a></nav>
<div class="who">{% if not writable %}read-only console{% elif signed_in %}signed in ·
<form class="inline" method="post" action="{{ base }}/logout"><input type="hidden" name="csrf"
value="{{ csrf }}"><button>sign out</button></form>{% else %}<a href="{{ base }}/login">sign in
to promote or roll back</a>{% endif %}</div></header>
<main>{% if error %}<p class="msg" id="error">{{ error }}</p>{% endif %}
{% block main %}{% endblock %}</main></body></html>"""

_MODELS = """{% extends "base" %}{% block main %}
<h1>Models</h1>
<form method="get" action="{{ base }}/" class="act" id="search">
<label>name <input name="q" value="{{ q }}" placeholder="churn"></label>
<label>tag <input name="tag" value="{{ tag }}" placeholder="team=risk"></label>
<button>search</button></form>
{% if models %}<table id="models"><tr><th>model</th><th>task</th><th>versions</th>
<th>latest</th><th>aliases</th><th>tags (latest)</th></tr>
{% for m in models %}<tr><td><a href="{{ base }}/models/{{ m.name|u }}">{{ m.name }}</a></td>
<td>{{ m.task }}</td><td class="num">{{ m.versions }}</td><td class="num">{% if m.latest %}
<a href="{{ base }}/models/{{ m.name|u }}/{{ m.latest }}">{{ m.latest }}</a>{% else %}-{% endif %}</td>
<td>{% for a, v in m.aliases|dictsort %}<span class="badge">@{{ a }} → {{ v }}</span>{% endfor %}</td>
<td>{% for k, v in m.tags|dictsort %}<code>{{ k }}={{ v }}</code> {% endfor %}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">No model matches{% if q or tag %} this search{% endif %}.</p>{% endif %}
{% endblock %}"""

_PROCESSES = """{% macro processes(rows, base) %}{% if rows %}
<table class="processes"><tr><th>surface</th><th>host</th><th>pid</th><th>follows</th>
<th>serves</th><th>state</th><th>rows/s</th><th>scored</th><th>rejected by reason</th>
<th>warnings</th><th>last seen</th><th>next</th></tr>
{% for p in rows %}<tr class="{{ 'bad' if p.stale else ('warn' if p.behind else '') }}">
<td>{{ p.surface }}</td><td>{{ p.host }}</td><td class="num">{{ p.pid }}</td>
<td><a href="{{ base }}/models/{{ p.model|u }}">{{ p.uri }}</a></td>
<td class="num version">{{ p.version if p.version is not none else '-' }}</td>
<td>{% if p.stale %}<span class="badge bad">not seen</span>{% elif p.behind %}<span
class="badge warn">behind: alias → {{ p.target }}</span>{% else %}<span class="badge ok">current</span>{% endif %}</td>
<td class="num">{{ p.stats.rows_per_s if p.stats.rows_per_s is not none else '-' }}</td>
<td class="num">{{ p.stats.scored if p.stats.scored is defined else '-' }}</td>
<td>{% for k, v in (p.stats.rejected or {})|dictsort %}{{ k }}: {{ v }}<br>{% endfor %}</td>
<td>{% for k, v in (p.stats.warnings or {})|dictsort %}{{ k }}: {{ v }}<br>{% endfor %}</td>
<td>{{ p.seen_seconds_ago }} s ago</td><td>{{ p.next }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">No live process reports serving this.</p>{% endif %}{% endmacro %}"""

_MODEL = """{% extends "base" %}{% from "processes" import processes %}{% block main %}
<h1>{{ m.name }}</h1>{% set drifting = (m.monitor.columns or [])|selectattr('drifted')|map(attribute='name')|list if m.monitor else [] %}
{% if drifting %}<p class="msg" id="drifting">Drifting in the current window: {{ drifting|join(', ') }}
(<a href="#drift">details</a>)</p>{% endif %}
<h2>Aliases</h2>
{% if m.aliases %}<table id="aliases"><tr><th>alias</th><th>version</th><th>live processes
following it</th></tr>{% for a, v in m.aliases.items() %}<tr><td>@{{ a }}</td>
<td class="num"><a href="{{ base }}/models/{{ m.name|u }}/{{ v }}">{{ v }}</a></td>
<td>{% for p in m.followers[a] %}{{ p.surface }} pid {{ p.pid }} on {{ p.host }}: {{ p.next }}<br>
{% else %}<span class="muted">none</span>{% endfor %}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">No alias yet.</p>{% endif %}
{% if writable and signed_in and m.versions %}
<form class="act" method="post" action="{{ base }}/models/{{ m.name|u }}/promote" id="promote">
<strong>Promote</strong> <label>alias <input name="alias" value="{{ (m.aliases|list|first) or 'production' }}"
size="12" required></label> <label>to version <select name="version">{% for v in m.versions %}
<option value="{{ v.version }}">{{ v.version }}</option>{% endfor %}</select></label>
<label>reason <input name="reason" size="40" required></label>
<input type="hidden" name="csrf" value="{{ csrf }}"><button>promote</button>
<span class="muted">every process following the alias loads the version at its next poll</span></form>
{% if m.aliases %}<form class="act" method="post" action="{{ base }}/models/{{ m.name|u }}/rollback"
id="rollback"><strong>Roll back</strong> <label>alias <select name="alias">{% for a in m.aliases %}
<option>{{ a }}</option>{% endfor %}</select></label> <label>reason <input name="reason" size="40"
required></label><input type="hidden" name="csrf" value="{{ csrf }}"><button>roll back</button>
</form>{% endif %}
{% elif writable %}<p class="muted"><a href="{{ base }}/login">Sign in</a> to promote or roll back.</p>{% endif %}

<h2>Versions</h2>
<table id="versions"><tr><th>version</th><th>created</th><th>by</th><th>task</th><th>metrics</th>
<th>formats</th><th>aliases</th><th>tags</th></tr>{% for v in m.versions %}<tr>
<td class="num"><a href="{{ base }}/models/{{ m.name|u }}/{{ v.version }}">{{ v.version }}</a></td>
<td>{{ v.created_at[:19] }}</td><td>{{ v.created_by or '' }}</td><td>{{ v.task }}</td>
<td>{% for k, x in v.metrics|dictsort %}{{ k }}={{ x|num }} {% endfor %}</td>
<td>{% for f, a in v.formats|dictsort %}<span class="badge {{ 'ok' if a.status == 'accepted' else 'bad' }}">{{ f }}</span>{% endfor %}</td>
<td>{% for a in v.aliases %}@{{ a }} {% endfor %}</td>
<td>{% for k, x in v.tags|dictsort %}<code>{{ k }}={{ x }}</code> {% endfor %}</td></tr>{% endfor %}</table>
{% if m.versions|length > 1 %}<form class="act" method="get" action="{{ base }}/models/{{ m.name|u }}/compare"
id="compare"><strong>Compare</strong> <select name="a">{% for v in m.versions %}<option value="{{ v.version }}"{{
' selected' if loop.index == 2 else '' }}>{{ v.version }}</option>{% endfor %}</select> with <select name="b">{% for v in m.versions %}
<option value="{{ v.version }}"{{ ' selected' if loop.first else '' }}>{{ v.version }}</option>{% endfor %}</select>
<button>compare</button></form>{% endif %}

<h2>Alias history</h2>
{% if m.history %}<table id="history"><tr><th>at</th><th>alias</th><th>action</th><th>from</th><th>to</th>
<th>by</th><th>reason</th></tr>{% for e in m.history %}<tr><td>{{ (e.at or '')[:19] }}</td><td>@{{ e.alias }}</td>
<td>{{ e.action }}</td><td class="num">{{ e.from_version or '-' }}</td><td class="num">{{ e.to_version or '-' }}</td>
<td>{{ e.by or '' }}</td><td>{{ e.reason or '' }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">No alias was ever set.</p>{% endif %}

<h2>Serving now</h2>{{ processes(m.processes, base) }}

<section id="monitoring"><h2>Monitoring</h2>{% set mon = m.monitor %}
{% if not mon %}<p class="muted">No versions.</p>{% elif mon.note %}<p class="muted" id="monitor-note">{{ mon.note }}</p>
{% else %}{% set r = mon.report %}
<p>Version {{ r.version }}, {{ r.rows }} predictions logged, windows of {{ mon.window }}
(<a href="?window=1h">1h</a> · <a href="?window=6h">6h</a> · <a href="?window=1d">1d</a> ·
<a href="?window=1w">1w</a>), compared with the training statistics of version {{ r.reference.version }}.
{% if r.note %}{{ r.note }}{% endif %}</p>
{% if mon.columns %}<h3>Drift per column, current window{% if r.drift.window %} ({{ r.drift.window.start[:16] }},
{{ r.drift.window.rows }} rows){% endif %}</h3>
<table id="drift"><tr><th>column</th><th>drifted</th><th>statistic</th><th>value</th><th>threshold</th></tr>
{% for c in mon.columns %}{% for t in c.tests %}<tr class="{{ 'bad' if t.drifted else '' }}">
{% if loop.first %}<td rowspan="{{ c.tests|length }}" class="column">{{ c.name }}</td>
<td rowspan="{{ c.tests|length }}">{{ 'yes' if c.drifted else 'no' }}</td>{% endif %}
<td>{{ t.statistic }}</td><td class="num">{{ t.value|num }}</td><td class="num">{{ t.threshold }}</td></tr>
{% endfor %}{% endfor %}</table>{% endif %}
{% if r.drift.prediction %}<h3>Prediction drift</h3><table><tr><th>output</th><th>statistic</th>
<th>value</th><th>drifted</th></tr>{% for t in r.drift.prediction %}<tr class="{{ 'bad' if t.drifted else '' }}">
<td>{{ t.feature }}</td><td>{{ t.statistic }}</td><td class="num">{{ t.value|num }}</td>
<td>{{ 'yes' if t.drifted else 'no' }}</td></tr>{% endfor %}</table>{% endif %}
<div class="charts">{% for key, chart in mon.charts.items() %}<div id="chart-{{ key }}"><h3>{{ chart[0] }}</h3>{{ chart[1] }}</div>{% endfor %}</div>
{% if r.performance.change %}<h3>Performance</h3><table><tr><th>metric</th><th>training</th><th>now</th></tr>
{% for k, c in r.performance.change.items() %}<tr class="{{ 'bad' if c.worse else '' }}"><td>{{ k }}</td>
<td class="num">{{ c.reference|num }}</td><td class="num">{{ c.current|num }}</td></tr>{% endfor %}</table>
{% elif r.performance.note %}<p class="muted">{{ r.performance.note }}</p>{% endif %}
{% set last = r.windows[-1] if r.windows else none %}{% if last and last.flagged_by %}
<h3>Input warnings, current window</h3><table><tr><th>field: kind</th><th>rows</th></tr>
{% for k, v in last.flagged_by|dictsort %}<tr><td>{{ k }}</td><td class="num">{{ v }}</td></tr>{% endfor %}</table>{% endif %}
<h3>Alert rules</h3>{% if mon.rules %}<table id="rules"><tr><th>rule</th><th>state</th><th>detail</th><th>file</th></tr>
{% for x in mon.rules %}<tr class="{{ 'bad' if x.fired else '' }}"><td>{{ x.rule }}</td>
<td>{{ 'fired' if x.fired else ('ok' if x.fired is not none else 'error') }}</td><td>{{ x.detail or '' }}</td>
<td>{{ x.file }}</td></tr>{% endfor %}</table>{% else %}<p class="muted">No rules file watches this model
(give --check RULES.yaml, or schedule a check).</p>{% endif %}
{% endif %}
</section>
{% if m.alerts_recorded %}<h3>Alerts recorded</h3><table><tr><th>at</th><th>version</th><th>rules</th></tr>
{% for e in m.alerts_recorded[:20] %}<tr><td>{{ e.at[:19] }}</td><td>{{ e.version }}</td>
<td>{{ (e.rules or [])|join('; ') }}</td></tr>{% endfor %}</table>{% endif %}

<h2>Retrain decisions and events</h2>
{% if m.decisions %}<table id="decisions"><tr><th>at</th><th>kind</th><th>decision</th><th>champion</th>
<th>challenger</th><th>reason</th></tr>{% for e in m.decisions[:30] %}<tr><td>{{ e.at[:19] }}</td>
<td>{{ e.kind }}</td><td>{{ e.decision or '' }}</td>
<td>{% if e.champion %}{{ e.champion.version }} ({{ e.champion.score|num }}){% endif %}</td>
<td>{% if e.challenger %}{{ e.challenger.version }} ({{ e.challenger.score|num }}){% endif %}</td>
<td>{{ e.reason or '' }}</td></tr>{% endfor %}</table>{% else %}<p class="muted">None recorded.</p>{% endif %}
{% endblock %}"""

_VERSION = """{% extends "base" %}{% block main %}
<h1><a href="{{ base }}/models/{{ v.name|u }}">{{ v.name }}</a> / {{ v.version }}
{% for a in v.aliases %}<span class="badge">@{{ a }}</span>{% endfor %}</h1>
<p>{{ v.task }} · created {{ v.created_at[:19] }} by {{ v.created_by or '?' }}{% if v.description %}
· {{ v.description }}{% endif %}</p>
<h2>Signature</h2><table id="signature"><tr><th>input</th><th>kind</th><th>type</th><th>nullable</th>
<th>range / vocabulary</th></tr>{% for c in v.signature.inputs %}<tr><td>{{ c.name }}</td><td>{{ c.kind }}</td>
<td>{{ c.dtype }}</td><td>{{ 'yes' if c.nullable else 'no' }}</td><td>{% if c.kind == 'categorical' %}
{{ (c.categories or [])|join(', ') }}{% else %}{{ c.min|num }} .. {{ c.max|num }}{% endif %}</td></tr>{% endfor %}</table>
{% if v.signature.classes is not none %}<p>classes: {{ v.signature.classes|join(', ') }}</p>{% endif %}
<h2>Formats</h2><table id="formats"><tr><th>format</th><th>status</th><th>max abs diff</th><th>label flips</th>
<th>rows</th><th>1-row µs</th><th>size</th><th>signed</th><th>reason</th></tr>{% for f, a in v.formats|dictsort %}
<tr class="{{ '' if a.status == 'accepted' else 'bad' }}"><td>{{ f }}</td><td>{{ a.status }}</td>
<td class="num">{{ (a.parity or {}).max_abs_diff|num }}</td><td class="num">{{ (a.parity or {}).label_flips|num }}</td>
<td class="num">{{ (a.parity or {}).rows|num }}</td><td class="num">{{ (a.parity or {}).single_row_us|num }}</td>
<td class="num">{{ a.size|num }}</td><td>{{ 'yes' if a.signed else 'no' }}</td><td>{{ a.reason or '' }}</td></tr>{% endfor %}</table>
<h2>What serves it</h2><table id="serving"><tr><th>purpose</th><th>surfaces</th><th>artefact</th><th>why</th></tr>
{% for purpose, surfaces in [('row', 'HTTP, streams, triggers'), ('batch', 'batch jobs')] %}{% set c = v.serving[purpose] %}
<tr><td>{{ purpose }}</td><td>{{ surfaces }}</td><td>{{ c.format or 'nothing' }}</td><td>{{ c.why }}</td></tr>{% endfor %}</table>
<h2>Metrics</h2>{% if v.metrics %}<table id="metrics">{% for k, x in v.metrics|dictsort %}<tr><th>{{ k }}</th>
<td class="num">{{ x|num }}</td></tr>{% endfor %}</table>{% else %}<p class="muted">none recorded</p>{% endif %}
<h2>Parameters</h2>{% if v.params %}<table id="params">{% for k, x in v.params|dictsort %}<tr><th>{{ k }}</th>
<td>{{ x }}</td></tr>{% endfor %}</table>{% else %}<p class="muted">none recorded</p>{% endif %}
<h2>Lineage</h2><table id="lineage"><tr><th>data fingerprint</th><td><code>{{ v.data_fingerprint or '-' }}</code></td></tr>
<tr><th>parent version</th><td>{% if v.parent_version %}<a href="{{ base }}/models/{{ v.name|u }}/{{ v.parent_version }}">{{
v.parent_version }}</a>{% else %}-{% endif %}</td></tr>{% for k, x in v.lineage|dictsort %}<tr><th>{{ k }}</th>
<td>{{ x }}</td></tr>{% endfor %}{% for k, x in v.library_versions|dictsort %}<tr><th>{{ k }}</th><td>{{ x }}</td></tr>{% endfor %}</table>
<h2>Reason-code importance</h2>{% if v.importance is string %}<p class="muted" id="importance">not available: {{ v.importance }}</p>
{% else %}<p class="muted">Mean absolute contribution to the raw score over the registered sample.</p>
<table id="importance"><tr><th>input</th><th>mean |contribution|</th></tr>{% for c, x in v.importance %}<tr><td>{{ c }}</td>
<td class="num">{{ x|num }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Retrain decisions</h2>{% if v.decisions %}<table><tr><th>at</th><th>decision</th><th>reason</th></tr>
{% for e in v.decisions %}<tr><td>{{ e.at[:19] }}</td><td>{{ e.decision or e.kind }}</td><td>{{ e.reason or '' }}</td></tr>
{% endfor %}</table>{% else %}<p class="muted">none name this version</p>{% endif %}
{% endblock %}"""

_COMPARE = """{% extends "base" %}{% block main %}
<h1><a href="{{ base }}/models/{{ c.name|u }}">{{ c.name }}</a>: version {{ c.a.version }} against {{ c.b.version }}</h1>
<h2>Metrics</h2><table id="compare-metrics"><tr><th>metric</th><th>{{ c.a.version }}</th><th>{{ c.b.version }}</th>
<th>change</th></tr>{% for k, x, y in c.metrics %}<tr><td>{{ k }}</td><td class="num">{{ x|num }}</td>
<td class="num">{{ y|num }}</td><td class="num">{% if x is number and y is number %}{{ '%+.4g'|format(y - x) }}{% endif %}</td></tr>
{% endfor %}</table>
<h2>Signature changes</h2>{% if c.changes %}<table id="changes"><tr><th>column</th><th>change</th><th>detail</th></tr>
{% for x in c.changes %}<tr><td>{{ x.column }}</td><td>{{ x.change }}</td><td>{{ x.detail }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">Same columns, types, ranges and vocabularies.</p>{% endif %}
<h2>Formats: parity and latency</h2><table id="compare-formats"><tr><th rowspan="2">format</th>
<th colspan="3">version {{ c.a.version }}</th><th colspan="3">version {{ c.b.version }}</th></tr>
<tr><th>status</th><th>max abs diff</th><th>1-row µs</th><th>status</th><th>max abs diff</th><th>1-row µs</th></tr>
{% for f, x, y in c.formats %}<tr><td>{{ f }}</td>{% for a in (x, y) %}{% if a %}<td>{{ a.status }}</td>
<td class="num">{{ a.max_abs_diff|num }}</td><td class="num">{{ a.single_row_us|num }}</td>{% else %}
<td colspan="3" class="muted">absent</td>{% endif %}{% endfor %}</tr>{% endfor %}</table>
{% endblock %}"""

_SERVING = """{% extends "base" %}{% from "processes" import processes %}{% block main %}
<h1>Serving, live</h1><p class="muted">Every serve, stream, trigger run and learn process writes a
heartbeat to the registry every few seconds. A process serving an older version than the URI
it follows names is marked behind; one not seen for {{ stale|int }} s is marked not seen.</p>
{{ processes(rows, base) }}{% endblock %}"""

_SCHEDULES = """{% extends "base" %}{% block main %}
<h1>Schedules</h1>{% for s in schedules %}<h2 id="schedule-{{ loop.index }}">{{ s.name }}</h2>
<p>{{ s.kind }} <code>{{ s.path }}</code> on <code>{{ s.cron }}</code> · next run
<strong>{{ (s.next_run_at or '-')[:19] }}</strong> UTC · missed runs: {{ s.missed }}</p>
{% if s.runs %}<table><tr><th>due</th><th>status</th><th>finished</th><th>exit</th><th>decision</th>
<th>reason</th></tr>{% for r in s.runs %}<tr class="{{ 'bad' if r.status in ('failed', 'lost') else '' }}">
<td>{{ (r.due_at or '')[:19] }}</td><td>{{ r.status }}</td><td>{{ (r.finished_at or '')[:19] }}</td>
<td class="num">{{ r.exit_code if r.exit_code is not none else '-' }}</td><td>{{ r.decision }}</td>
<td>{{ r.reason }}</td></tr>{% endfor %}</table>{% else %}<p class="muted">Not run yet.</p>{% endif %}
{% else %}<p class="muted">No schedules (modelport schedule add).</p>{% endfor %}{% endblock %}"""

_LOGIN = """{% extends "base" %}{% block main %}<h1>Sign in</h1>
{% if writable %}<form class="act" method="post" action="{{ base }}/login" id="login">
<label>token <input type="password" name="token" size="40" required autocomplete="off"></label>
<input type="hidden" name="csrf" value="{{ csrf }}"><button>sign in</button></form>
<p class="muted">The token is the content of the console's --token-file.</p>
{% else %}<p>This console is read-only: start it with <code>--token-file FILE</code> to promote and
roll back from it.</p>{% endif %}{% endblock %}"""

_ERROR = """{% extends "base" %}{% block main %}<h1>{{ heading }}</h1>{% endblock %}"""

TEMPLATES = {"base": _BASE, "models": _MODELS, "processes": _PROCESSES, "model": _MODEL,
             "version": _VERSION, "compare": _COMPARE, "serving": _SERVING,
             "schedules": _SCHEDULES, "login": _LOGIN, "error": _ERROR}


def _num(x: object) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def environment() -> jinja2.Environment:
    """The Jinja2 environment of the console: autoescaping on, the templates above."""
    from modelport.errors import require

    jinja2 = require("jinja2", "http", "the console (modelport ui)")
    env = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.ChainableUndefined)
    env.filters["u"] = lambda text: quote(str(text), safe="")
    env.filters["num"] = _num
    return env

"""Small charts drawn as inline SVG, for the self-contained HTML report (no scripts, no
network): lines over time windows and paired bars of two distributions."""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777",
           "#65a30d", "#ea580c", "#4b5563", "#0d9488", "#9333ea")
GRID = "#e5e7eb"
AXIS = "#6b7280"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    ticks: list[float] = []
    t = start
    while t <= hi + step * 0.5 and len(ticks) < 12:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def line_chart(x_labels: list[str], series: dict[str, list[float | None]], *,
               width: int = 560, height: int = 240, hlines: dict[str, float] | None = None,
               highlight: set[str] | None = None, y_min: float | None = None,
               y_max: float | None = None, title: str = "") -> str:
    """Lines (one per series, None for a gap) over ``x_labels``; ``hlines`` draws dashed
    reference lines (a threshold, the reference metric); ``highlight`` series are drawn
    thicker."""
    left, right, top, bottom = 52, 12 + (130 if len(series) > 1 else 0), 24, 34
    w, h = width - left - right, height - top - bottom
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    values += list((hlines or {}).values())
    lo = min(values) if values else 0.0
    hi = max(values) if values else 1.0
    lo = lo if y_min is None else min(y_min, lo)
    hi = hi if y_max is None else max(y_max, hi)
    ticks = _nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]
    n = max(len(x_labels), 1)

    def x(i: int) -> float:
        return left + (w * (i + 0.5) / n)

    def y(v: float) -> float:
        return top + h - (v - lo) / (hi - lo) * h if hi > lo else top + h / 2

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" {FONT} '
           'font-size="11">']
    for t in ticks:
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                   f'stroke="{GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" '
                   f'fill="{AXIS}">{_fmt(t)}</text>')
    every = max(1, math.ceil(n / 8))
    for i, label in enumerate(x_labels):
        if i % every == 0 or i == n - 1:
            out.append(f'<text x="{x(i):.1f}" y="{top + h + 18}" text-anchor="middle" '
                       f'fill="{AXIS}">{escape(label)}</text>')
    for name, level in (hlines or {}).items():
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
                   f'stroke="#111827" stroke-dasharray="5 4" stroke-width="1.2"/>')
        ty = y(level) - 5 if y(level) - 5 > top + 8 else y(level) + 14
        out.append(f'<text x="{left + w - 4}" y="{ty:.1f}" text-anchor="end" '
                   f'fill="#111827">{escape(name)} {_fmt(level)}</text>')
    for k, (name, vals) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        bold = highlight is not None and name in highlight
        width_ = 2.6 if bold else (1.4 if highlight else 2.0)
        opacity = 1.0 if bold or not highlight else 0.55
        segment: list[str] = []
        segments = []
        for i, v in enumerate(vals):
            if v is None or not math.isfinite(v):
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{x(i):.1f},{y(v):.1f}")
        if segment:
            segments.append(segment)
        for seg in segments:
            if len(seg) > 1:
                out.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{color}" '
                           f'stroke-width="{width_}" stroke-opacity="{opacity}" '
                           'stroke-linejoin="round"/>')
            for p in seg:
                cx, cy = p.split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="{3 if bold else 2.4}" '
                           f'fill="{color}" fill-opacity="{opacity}"><title>{escape(name)}'
                           '</title></circle>')
        if len(series) > 1:
            ly = top + 4 + k * 15
            if ly < top + h + 10:
                out.append(f'<rect x="{left + w + 12}" y="{ly - 8}" width="10" height="10" '
                           f'fill="{color}" rx="2"/>')
                label = name if len(name) <= 16 else name[:15] + "…"
                weight = ' font-weight="600"' if bold else ""
                out.append(f'<text x="{left + w + 27}" y="{ly + 1}" fill="#111827"{weight}>'
                           f'{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def paired_bars(categories: list[str], reference: list[float], current: list[float], *,
                width: int = 360, height: int = 200, drifted: bool = False,
                title: str = "") -> str:
    """Two distributions over the same bins side by side: the reference in grey, the
    current window in blue (red when drifted)."""
    left, right, top, bottom = 40, 8, 10, 46
    w, h = width - left - right, height - top - bottom
    hi = max([*reference, *current, 0.01])
    ticks = _nice_ticks(0.0, hi, 4)
    hi = ticks[-1]
    n = max(len(categories), 1)
    band = w / n
    bar = max(min(band * 0.38, 22), 1.5)
    color = "#dc2626" if drifted else "#2563eb"

    def y(v: float) -> float:
        return top + h - v / hi * h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" {FONT} '
           'font-size="10">']
    for t in ticks:
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                   f'stroke="{GRID}"/>')
        out.append(f'<text x="{left - 4}" y="{y(t) + 3:.1f}" text-anchor="end" '
                   f'fill="{AXIS}">{t:.0%}</text>')
    for i, cat in enumerate(categories):
        cx = left + band * (i + 0.5)
        r = reference[i] if i < len(reference) else 0.0
        c = current[i] if i < len(current) else 0.0
        out.append(f'<rect x="{cx - bar:.1f}" y="{y(r):.1f}" width="{bar:.1f}" '
                   f'height="{top + h - y(r):.1f}" fill="#9ca3af"><title>{escape(cat)}: '
                   f'training {r:.1%}</title></rect>')
        out.append(f'<rect x="{cx:.1f}" y="{y(c):.1f}" width="{bar:.1f}" '
                   f'height="{top + h - y(c):.1f}" fill="{color}"><title>{escape(cat)}: '
                   f'current {c:.1%}</title></rect>')
        label = cat if len(cat) <= 12 else cat[:11] + "…"
        out.append(f'<text transform="translate({cx:.1f},{top + h + 8}) rotate(35)" '
                   f'fill="{AXIS}" font-size="9">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def bars(x_labels: list[str], values: list[float], *, width: int = 560, height: int = 200,
         color: str = "#2563eb", title: str = "") -> str:
    """One bar per window (volumes)."""
    left, right, top, bottom = 52, 12, 14, 34
    w, h = width - left - right, height - top - bottom
    ticks = _nice_ticks(0.0, max([*values, 1.0]), 4)
    hi = ticks[-1]
    n = max(len(values), 1)
    band = w / n
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" {FONT} '
           'font-size="11">']
    for t in ticks:
        yy = top + h - t / hi * h
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{yy:.1f}" y2="{yy:.1f}" '
                   f'stroke="{GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" '
                   f'fill="{AXIS}">{_fmt(t)}</text>')
    every = max(1, math.ceil(n / 8))
    for i, v in enumerate(values):
        bh = v / hi * h
        x = left + band * i + band * 0.15
        out.append(f'<rect x="{x:.1f}" y="{top + h - bh:.1f}" width="{band * 0.7:.1f}" '
                   f'height="{bh:.1f}" fill="{color}" rx="2"><title>{escape(x_labels[i])}: '
                   f'{v:,.0f}</title></rect>')
        if i % every == 0 or i == n - 1:
            out.append(f'<text x="{left + band * (i + 0.5):.1f}" y="{top + h + 18}" '
                       f'text-anchor="middle" fill="{AXIS}">{escape(x_labels[i])}</text>')
    out.append("</svg>")
    return "".join(out)

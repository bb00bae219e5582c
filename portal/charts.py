"""Bar charts as inline SVG, drawn on the server: no script, no CDN, readable offline."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

__all__ = ["Bar", "bar_chart"]

WIDTH, HEIGHT, PADDING = 720, 160, 24


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    errors: int = 0


def bar_chart(bars: list[Bar], title: str) -> SafeString:
    """Requests per period as bars, errors (4xx and 5xx) stacked in red; each bar's <title>
    names its period and counts for a hover tooltip and for screen readers."""
    peak = max((bar.value for bar in bars), default=0) or 1
    slot = (WIDTH - 2 * PADDING) / max(len(bars), 1)
    rects = format_html_join("", "{}", ((_bar(index, bar, slot, peak),) for index, bar in enumerate(bars)))
    total = sum(bar.value for bar in bars)
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" data-total="{}">'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#c9ceda"/>{}'
        '<text x="{}" y="14" class="peak">{}</text></svg>',
        WIDTH, HEIGHT, title, total,
        PADDING, HEIGHT - PADDING, WIDTH - PADDING, HEIGHT - PADDING, rects,
        PADDING, f"max {peak}",
    )  # fmt: skip


def _bar(index: int, bar: Bar, slot: float, peak: int) -> SafeString:
    usable = HEIGHT - 2 * PADDING
    height = usable * bar.value / peak
    error_height = usable * bar.errors / peak
    x = PADDING + index * slot + slot * 0.1
    width = slot * 0.8
    base = HEIGHT - PADDING
    numbers = [
        f"{n:.1f}" for n in (x, base - height, width, height, x, base - error_height, width, error_height)
    ]
    return format_html(
        '<g data-period="{}" data-requests="{}" data-errors="{}"><title>{}: {} requests, {} errors</title>'
        '<rect x="{}" y="{}" width="{}" height="{}" fill="#2f5bd3"/>'
        '<rect x="{}" y="{}" width="{}" height="{}" fill="#d64545"/></g>',
        bar.label, bar.value, bar.errors, bar.label, bar.value, bar.errors, *numbers,
    )  # fmt: skip

"""The digest's chart: the week's funnel and the SLA trend, as a PNG (matplotlib, headless).

It carries its own light background and mid-tone colours, so it reads the same in Slack's
and Teams' light and dark themes.
"""

from __future__ import annotations

import io

# A bare Figure renders with the Agg canvas: no pyplot, no display, no GUI toolkit.
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from digests.digest import Digest

INK, MUTED, PAPER = "#1f2430", "#5b6275", "#ffffff"
MARKETING, SALES, TARGET = "#3b6fd8", "#d9822b", "#8a8f9c"


def _funnel(figure: Figure, d: Digest) -> None:
    axes = figure.add_subplot(1, 2, 1)
    f = d.funnel
    converted = f.outcomes.get("meeting_booked", 0) + f.outcomes.get("opportunity", 0)
    converted += f.outcomes.get("won", 0)
    steps = [
        ("Generated", f.generated, MARKETING),
        ("Handed off", f.handed_off, MARKETING),
        ("Accepted", f.accepted, SALES),
        ("First touch", f.first_touched, SALES),
        ("Attempted", f.attempted_leads, SALES),
        ("Meeting or better", converted, SALES),
    ]
    labels = [label for label, _, _ in steps][::-1]
    values = [value for _, value, _ in steps][::-1]
    colours = [colour for _, _, colour in steps][::-1]
    bars = axes.barh(labels, values, color=colours)
    axes.bar_label(bars, padding=3, color=INK, fontsize=9)
    axes.set_title(f"Funnel, {d.week}", color=INK, fontsize=11, loc="left")
    axes.margins(x=0.18)
    _plain(axes)
    axes.get_xaxis().set_visible(False)


def _trend(figure: Figure, d: Digest) -> None:
    axes = figure.add_subplot(1, 2, 2)
    weeks = [h.week.split("-")[1] for h in d.trend]
    touch = [
        None if h.first_touch_in_time is None else 100 * h.first_touch_in_time for h in d.trend
    ]
    accepted = [None if h.acceptance_rate is None else 100 * h.acceptance_rate for h in d.trend]
    axes.plot(
        weeks,
        [v if v is not None else float("nan") for v in touch],
        marker="o",
        color=SALES,
        label="First touch in time",
    )
    axes.plot(
        weeks,
        [v if v is not None else float("nan") for v in accepted],
        marker="s",
        color=MARKETING,
        label="Leads accepted",
    )
    axes.axhline(
        100 * d.marketing.acceptance_rate.target,
        color=TARGET,
        linestyle="--",
        linewidth=1,
        label="Acceptance target",
    )
    axes.set_ylim(0, 105)
    axes.set_ylabel("%", color=MUTED)
    axes.set_title(f"The last {len(d.trend)} weeks", color=INK, fontsize=11, loc="left")
    axes.legend(frameon=False, fontsize=8, labelcolor=INK, loc="lower left")
    _plain(axes)


def _plain(axes: Axes) -> None:
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_color(MUTED)
    axes.tick_params(colors=INK, labelsize=9)
    axes.set_facecolor(PAPER)


def chart_png(d: Digest) -> bytes:
    """The chart as PNG bytes (about 900 × 360 pixels)."""
    figure = Figure(figsize=(9, 3.6), dpi=100, facecolor=PAPER)
    _funnel(figure, d)
    _trend(figure, d)
    figure.tight_layout(pad=1.2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor=PAPER)
    return buffer.getvalue()

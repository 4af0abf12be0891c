"""Plots of result files as PNG and SVG: the headline, the cost model, cost per call, where the
time goes, same-run ratios across machines, and throughput and latency with client threads. Every
figure fits one screen and is drawn at the width the report shows it (at most 1166 px, so the
report's column shows it at 100%; at most 1200 px high, the headline at most 1000): a long one is
split into pages. Every variant has one colour in every figure (PALETTE), every text is at least
9 pt, legends sit outside the axes."""

import dataclasses
import itertools
import os
import re
import textwrap
import zlib

import matplotlib
matplotlib.use("Agg")
import matplotlib.lines  # noqa: E402
import matplotlib.ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)
from matplotlib.patches import Patch  # noqa: E402

from . import costmodel, derive, fmt, headline, names  # noqa: E402
from .stats import median, spread  # noqa: E402

# One colour per variant, by name, in every figure. The names are the paired blocks' (cloak_blocks):
# the cloaking variants none ... dynamic_lru and the baselines roundtrip ... clock; a matrix cell maps
# onto one with variant_key, a headline row with HEADLINE_KEYS, a term of the decomposition with
# TERM_KEYS (its transport is the roundtrip baseline). No two names share a colour.
PALETTE = {
    # cloaking variants
    "none": "#7f7f7f",
    "none_aa": "#c7c7c7",                  # the blocks' A/A copy of none
    "static": "#1f77b4",
    "dynamic": "#d62728",                  # kernel probe, cache none: the headline's dynamic
    "dynamic_lru": "#2ca02c",              # kernel probe, cache lru:N
    "dynamic_generation": "#ff7f0e",       # generation probe, cache none
    "dynamic_generation_lru": "#bcbd22",   # generation probe, cache lru:N
    "dynamic_track_token": "#9467bd",      # kernel probe, cache none, track token
    "dynamic_per_message": "#e377c2",      # per-message credentials
    # baselines, which are also the terms of the decomposition
    "roundtrip": "#c49c94",
    "probe": "#17becf",
    "switch": "#393b79",
    "new_context": "#8c564b",
    "clock": "#dbdb8d",
    # terms only the decomposition has
    "service_ticket": "#7b4173",
    "mic": "#637939",
    "remainder": "#e7ba52",
}
VARIANT_LABELS = {
    "none": "none", "none_aa": "none, A/A copy", "static": "static",
    "dynamic": "dynamic, cache none (kernel probe)",
    "dynamic_lru": "dynamic, cache lru (kernel probe)",
    "dynamic_generation": "dynamic, cache none (generation probe)",
    "dynamic_generation_lru": "dynamic, cache lru (generation probe)",
    "dynamic_track_token": "dynamic, cache none (kernel probe, track token)",
    "dynamic_per_message": "dynamic, per-message credentials (no probe, no context)",
    "roundtrip": "transport (raw round trip)", "probe": "identity probe", "switch": "token switch",
    "new_context": "new security context", "clock": "clock read",
    "service_ticket": derive.COMPONENT_LABELS["service_ticket"],
    "mic": derive.COMPONENT_LABELS["mic"], "remainder": derive.COMPONENT_LABELS["remainder"]}
HEADLINE_KEYS = {"none": "none", "static": "static", "dynamic, cache none": "dynamic",
                 "dynamic, cache lru": "dynamic_lru"}
TERM_KEYS = {"transport": "roundtrip"}
# A negative term: an outline, hatched, in a colour no variant has.
NEGATIVE_EDGE = "#8a6d00"
NEGATIVE_TEXT_COLOR = "#5a4500"
# Variants no table above names (a strategy added later): a colour none of PALETTE's, by a hash
# of the name, so it too is the same in every figure.
_SPARE_COLORS = ("#ad494a", "#5254a3", "#8ca252", "#bd9e39", "#a55194", "#6b6ecf", "#e7969c")
# Machines are not variants: colours of their own (history.py and the same-run ratios).
GENERIC_COLOR = "#5f7f99"  # a plain benchmark: no variant
_MACHINE_COLORS = ("#252525", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#969696")
# The value labels on bars, ticks, legends and captions: never under 9 pt.
FONT = {"font.size": 10.0, "axes.titlesize": 10.5, "axes.labelsize": 10.0,
        "xtick.labelsize": 9.5, "ytick.labelsize": 9.5, "legend.fontsize": 9.5,
        "legend.title_fontsize": 9.5, "figure.titlesize": 12.5}
MIN_FONT_PT = 9.0
VALUE_PT = 9.0     # a value printed on a bar
CAPTION_PT = 9.0
matplotlib.rcParams.update(FONT)  # tick labels are made at draw time, from rcParams

_PATTERN_ORDER = {"steady": 0, "switch": 1, "reimpersonate": 3}
_PLACE_TEXT = {"same": "client and downstream on one CPU", "cross": "on different CPUs",
               "unpinned": "unpinned", "na": "in process"}
SPREAD_TEXT = "bars: median of the repetitions; whiskers: interquartile range; dots: repetitions"

PLOT_KINDS = ("headline", "cost_model", "decomposition", "cost_per_call", "thread_throughput",
              "thread_latency")
MACHINES_STEM = "machines.same_run_ratios"
DPI = 110
WIDTH_IN = 1166.0 / DPI  # the report's column (1200 px less its padding) at 100%
MAX_WIDTH_IN = WIDTH_IN
MAX_HEIGHT_IN = 1200.0 / DPI
HEADLINE_MAX_HEIGHT_IN = 1000.0 / DPI
CHAR_IN = 0.075  # about the width of one character at 9.5 pt, for laying out labels
_gids = itertools.count()


def variant_key(info):
    """The PALETTE name of a matrix cell's cloaking variant."""
    if info.cloaking != "dynamic":
        return info.cloaking
    if info.cache == "per-message":
        return "dynamic_per_message"
    key = "dynamic" if info.probe in ("kernel", None, "na") else "dynamic_" + info.probe
    if info.cache not in (None, "none", "na"):
        key += "_lru" if info.cache.startswith("lru") else "_" + info.cache
    return key + "_track_token" if info.track == "token" else key


def color(key):
    """The colour of a variant (or baseline, or term) in every figure."""
    if key in PALETTE:
        return PALETTE[key]
    return _SPARE_COLORS[zlib.crc32(key.encode()) % len(_SPARE_COLORS)]


def variant_label(key):
    return VARIANT_LABELS.get(key, key.replace("_", " "))


def tag(artists, key, role="variant"):
    """Name the artists drawing one variant (gid `variant-<key>-<n>`, the SVG element's id too), so
    a test can read each variant's colour back from every figure."""
    if not isinstance(artists, (list, tuple)):
        artists = [artists]
    for a in artists:
        if a is not None:
            a.set_gid("%s-%s-%d" % (role, key, next(_gids)))
    return artists


def variant_patch(key, label=None):
    """A legend entry for a variant: its colour and, unless given, its label."""
    return tag(Patch(color=color(key), label=label or variant_label(key)), key)[0]


def machine_color(n):
    """The color of the n-th machine (file) in plots that put machines side by side."""
    return _MACHINE_COLORS[n % len(_MACHINE_COLORS)]


def _pack(items, height_of, budget, gap=0.0):
    """Consecutive items in pages whose heights (plus a gap between items) stay within budget."""
    pages, page, used = [], [], 0.0
    for item in items:
        h = height_of(item)
        if page and used + gap + h > budget:
            pages.append(page)
            page, used = [], 0.0
        used += (gap if page else 0.0) + h
        page.append(item)
    if page:
        pages.append(page)
    return pages


def _wrap(title, width=75):
    return "\n".join(textwrap.wrap(title, width))


def _lines(text):
    return text.count("\n") + 1


def _short(label):
    """A row label short enough for a panel in two columns."""
    return label.replace(" (no probe, no context)", "")


def _page_note(i, n):
    return "" if n == 1 else " (page %d of %d)" % (i + 1, n)


def _pattern_key(pattern):
    if pattern in _PATTERN_ORDER:
        return (_PATTERN_ORDER[pattern], 0)
    m = re.fullmatch(r"every:(\d+)", pattern)
    return (2, int(m.group(1))) if m else (4, pattern)


def _variant_key(info):
    """The order variants are drawn and listed in (not their colour: variant_key)."""
    order = {"none": 0, "static": 1, "dynamic": 2}
    cache = info.cache or ""
    return (order.get(info.cloaking, 3), info.probe or "", cache not in ("none", "na"), cache,
            info.track or "")


def _variant_keys(infos):
    """The PALETTE names of the variants among infos, in drawing order."""
    seen = {}
    for i in sorted(infos, key=_variant_key):
        seen.setdefault(variant_key(i), None)
    return list(seen)


def group_title(key):
    backend, transport, auth, prot, tickets, place, nbytes, threads = key
    parts = ["%s backend, %s" % (backend, "Unix socket" if transport == "uds" else transport)]
    if auth and auth != "local":
        parts.append("auth %s" % auth)
        if prot and prot != "na":
            parts.append("protection %s" % prot)
        if tickets and tickets != "na":
            parts.append("tickets %s" % tickets)
    if place in ("same", "cross"):
        parts.append("placement %s (%s)" % (place, _PLACE_TEXT[place]))
    elif place != "na":
        parts.append("placement %s" % place)
    parts.append("%d B payload" % nbytes)
    if threads is not None:
        parts.append("%d client thread%s" % (threads, "" if threads == 1 else "s"))
    return ", ".join(parts)


def _groups(result, threads=1):
    """Matrix cells by CellName.group_key(), in a stable order."""
    groups = {}
    for cell in result.cells.values():
        i = cell.info
        if i.is_cell and (threads is None or i.threads == threads):
            groups.setdefault(i.group_key(), []).append(cell)
    place_order = {"same": 0, "cross": 1, "unpinned": 2, "na": 3}
    # key: backend, transport, package (negotiate/mech:M), prot, tickets, place, bytes, threads
    return sorted(groups.items(), key=lambda kv: (kv[0][0] != "kernel",
                                                  headline.AUTH_ORDER.get(kv[0][2], 9),
                                                  str(kv[0][3]), str(kv[0][4]),
                                                  place_order.get(kv[0][5], 9), kv[0][6], kv[0][7]))


CAPTION_LINE_IN = 0.16
HEADER_IN = 0.55        # the figure's title
LEGEND_ROW_IN = 0.215


def _caption_lines(results, extra=""):
    lines = [r.caption() for r in results]
    if extra:
        lines += textwrap.wrap(extra, int((WIDTH_IN - 0.2) / 0.068))
    return lines


def _caption_in(results, extra=""):
    """Inches the caption needs at the bottom."""
    return CAPTION_LINE_IN * len(_caption_lines(results, extra)) + 0.12


def _caption(fig, results, extra=""):
    lines = _caption_lines(results, extra)
    fig.text(0.01, 0.06 / fig.get_figheight(), "\n".join(lines), fontsize=CAPTION_PT,
             va="bottom", ha="left", color="#333333", linespacing=1.25)
    return CAPTION_LINE_IN * len(lines) + 0.12


def _legend_in(handles, ncol):
    """Inches a figure legend of handles in ncol columns takes."""
    return LEGEND_ROW_IN * -(-len(handles) // max(1, min(ncol, len(handles)))) + 0.12


def _legend_ncol(handles, width_in=WIDTH_IN):
    """The most columns whose entries fit across the figure (matplotlib fills a legend's columns
    top to bottom, one after the other)."""
    labels = [len(h.get_label()) for h in handles]
    for ncol in range(len(labels), 1, -1):
        rows, large = divmod(len(labels), ncol)  # as matplotlib's Legend splits them
        sizes = [rows + 1] * large + [rows] * (ncol - large)
        starts = [sum(sizes[:i]) for i in range(ncol)]
        cols = [labels[a:a + n] for a, n in zip(starts, sizes) if n]
        if sum(max(c) * CHAR_IN + 0.75 for c in cols) <= width_in - 0.3:
            return ncol
    return 1


def _legend_and_title(fig, handles, title, ncol=None):
    """The figure's title and, under it, its legend: above every axes, off the data."""
    h = fig.get_figheight()
    ncol = ncol or _legend_ncol(handles)
    fig.legend(handles=handles, loc="upper center", ncol=min(ncol, len(handles)),
               bbox_to_anchor=(0.5, 1.0 - HEADER_IN / h), frameon=False,
               columnspacing=1.4, handlelength=1.6)
    fig.suptitle(title, y=1.0 - 0.12 / h, va="top")


def _grid(fig, nrows, ncols, top_in, bottom_in, left_in=0.85, right_in=0.2, wgap_in=0.85,
          hgap_in=0.9, height_ratios=None):
    """A gridspec laid out in inches; returns (gridspec, width of one axes in inches)."""
    w, h = fig.get_figwidth(), fig.get_figheight()
    axis_w = (w - left_in - right_in - (ncols - 1) * wgap_in) / ncols
    axis_h = (h - top_in - bottom_in - (nrows - 1) * hgap_in) / nrows
    grid = fig.add_gridspec(nrows, ncols, left=left_in / w, right=1 - right_in / w,
                            top=1 - top_in / h, bottom=bottom_in / h,
                            wspace=wgap_in / axis_w, hspace=hgap_in / max(axis_h, 0.1),
                            height_ratios=height_ratios)
    return grid, axis_w


def _value_labels(ax, points, pitch_in, axis_h_in, ymax):
    """Print each (x, y, text) above its bar at VALUE_PT: horizontal when the text fits the bar's
    width, else upright; the y axis grows so the text stays inside the axes."""
    longest = max((max(len(s) for s in t.split("\n")) for _, _, t in points), default=1)
    horizontal = longest * 0.068 + 0.04 <= pitch_in
    lines = max((_lines(t) for _, _, t in points), default=1)
    need_in = (lines * 0.16 if horizontal else longest * 0.068) + 0.12
    for x, y, text in points:
        ax.annotate(text, (x, y), xytext=(0, 4), textcoords="offset points", ha="center",
                    va="bottom", fontsize=VALUE_PT, rotation=0 if horizontal else 90,
                    linespacing=1.1)
    frac = min(0.7, need_in / max(axis_h_in, 0.5))
    ax.set_ylim(0, ymax / (1.0 - frac) if ymax > 0 else 1.0)


def _bar_axes(ax, patterns, unit, title, title_width):
    ax.set_xlim(-0.5, len(patterns) - 0.5)
    ax.set_xticks(range(len(patterns)))
    ax.set_xticklabels(patterns)
    ax.set_xlabel("token pattern")
    ax.set_ylabel("time per call (%s)" % unit)
    ax.set_title(_wrap(title, title_width))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _draw_cost_panel(ax, key, cells, axis_w_in, axis_h_in, title=None, title_width=110):
    """Bars per cloaking variant grouped by token pattern; whiskers the interquartile range, dots
    the repetitions, the median printed on each bar."""
    patterns = sorted({c.info.pattern for c in cells}, key=_pattern_key)
    variants = sorted({c.info.variant_label(): c.info for c in cells}.items(),
                      key=lambda kv: _variant_key(kv[1]))
    width = 0.8 / max(len(variants), 1)
    live = [c for c in cells if c.samples and not c.failed]
    div, unit = fmt.unit_for(max((max(c.samples) for c in live), default=1.0))
    first = -len(variants) * width / 2.0
    labels, top = [], 0.0
    for vi, (label, info) in enumerate(variants):
        for pi, pattern in enumerate(patterns):
            cell = next((c for c in cells if c.info.pattern == pattern
                         and c.info.variant_label() == label), None)
            if cell is None:
                continue
            x = pi + first + width * (vi + 0.5)
            if cell.failed or not cell.samples:
                ax.text(x, 0, "failed", rotation=90, ha="center", va="bottom",
                        color="#b00020", fontsize=VALUE_PT, fontweight="bold")
                continue
            m = median(cell.samples) / div
            q1, q3 = (v / div for v in spread(cell.samples))
            k = variant_key(info)
            bars = ax.bar(x, m, width * 0.92, color=color(k),
                          yerr=[[max(m - q1, 0)], [max(q3 - m, 0)]], capsize=2,
                          error_kw={"elinewidth": 0.9})
            tag(list(bars), k)
            ys = [v / div for v in cell.samples]
            ax.scatter([x] * len(ys), ys, s=5, color="black", alpha=0.55, zorder=3,
                       linewidths=0)
            labels.append((x, max(q3, m, max(ys)), fmt.ns(median(cell.samples))))
            top = max(top, q3, m, max(ys))
    pitch_in = axis_w_in * width / len(patterns)
    _value_labels(ax, labels, pitch_in, axis_h_in, top)
    _bar_axes(ax, patterns, unit, title or group_title(key), title_width)


def plot_cost_per_call(result):
    """(a) Time per call for each cloaking x token pattern, a panel per transport/placement (one
    across the figure, so each bar is wide enough for its label), three panels a page."""
    groups = _groups(result, threads=1)
    if not groups:
        groups = _groups(result, threads=None)
    if not groups:
        return []
    keys = _variant_keys(c.info for _, cells in groups for c in cells)
    handles = [variant_patch(k) for k in keys]
    ncol = _legend_ncol(handles)
    top = HEADER_IN + _legend_in(handles, ncol) + 0.55
    bottom = _caption_in([result], SPREAD_TEXT) + 0.62
    panel_h, gap = 2.9, 1.05
    per_page = max(1, int((MAX_HEIGHT_IN - top - bottom + gap) // (panel_h + gap)))
    pages = [groups[i:i + per_page] for i in range(0, len(groups), per_page)]
    figs = []
    for n, page in enumerate(pages):
        fig = Figure(figsize=(WIDTH_IN, top + bottom + len(page) * panel_h + (len(page) - 1) * gap))
        grid, axis_w = _grid(fig, len(page), 1, top, bottom, hgap_in=gap)
        for r, (key, cells) in enumerate(page):
            _draw_cost_panel(fig.add_subplot(grid[r, 0]), key, cells, axis_w, panel_h)
        _legend_and_title(fig, handles, "Cost per downstream call by cloaking and token pattern"
                          + _page_note(n, len(pages)), ncol)
        _caption(fig, [result], SPREAD_TEXT)
        figs.append(fig)
    return figs


def plot_headline(result):
    """The headline cells (headline.tables): one panel per authentication package and pinned
    placement, bars per variant grouped by token pattern, whiskers the 95% interval of the median."""
    tables = headline.tables(result)
    if not tables:
        return None
    variants = [label for label, _, _ in headline.VARIANTS]
    handles = [variant_patch(HEADLINE_KEYS[v]) for v in variants]
    ncol = _legend_ncol(handles)
    ncols = min(len(tables), 3)
    nrows = -(-len(tables) // ncols)
    extra = ("bars: median of the repetitions; whiskers: its 95% interval (order statistics); "
             "label: median and × the same pattern without cloaking")
    top = HEADER_IN + _legend_in(handles, ncol) + 0.6
    bottom = _caption_in([result], extra) + 0.62
    hgap = 1.1
    panel_h = min(4.0, (HEADLINE_MAX_HEIGHT_IN - top - bottom - (nrows - 1) * hgap) / nrows)
    fig = Figure(figsize=(WIDTH_IN, top + bottom + nrows * panel_h + (nrows - 1) * hgap))
    grid, axis_w = _grid(fig, nrows, ncols, top, bottom, hgap_in=hgap)
    width = 0.8 / len(variants)
    for t, table in enumerate(tables):
        ax = fig.add_subplot(grid[t // ncols, t % ncols])
        live = [r for r in table.rows if r.median is not None]
        div, unit = fmt.unit_for(max((r.high for r in live), default=1.0))
        labels, ymax = [], 0.0
        for r in table.rows:
            vi = variants.index(r.variant)
            x = headline.PATTERNS.index(r.pattern) + (vi + 0.5) * width - 0.4
            if r.median is None:
                ax.text(x, 0, "failed", rotation=90, ha="center", va="bottom", color="#b00020",
                        fontsize=VALUE_PT, fontweight="bold")
                continue
            m = r.median / div
            k = HEADLINE_KEYS[r.variant]
            bars = ax.bar(x, m, width * 0.92, color=color(k),
                          yerr=[[max(m - r.low / div, 0)], [max(r.high / div - m, 0)]], capsize=2,
                          error_kw={"elinewidth": 0.9})
            tag(list(bars), k)
            label = fmt.ns(r.median)
            if r.over_none is not None and r.variant != "none":
                label += "  %.2f×" % r.over_none
            labels.append((x, r.high / div, label))
            ymax = max(ymax, r.high / div, m)
        _value_labels(ax, labels, axis_w * width / len(headline.PATTERNS), panel_h, ymax)
        _bar_axes(ax, headline.PATTERNS, unit, table.title.replace(", 64 B, one client thread", ""),
                  int(axis_w / 0.075))
    _legend_and_title(fig, handles, "Headline: cost per downstream call (64 B, one client thread)",
                      ncol)
    _caption(fig, [result], extra)
    return fig


def plot_cost_model(result, every=None):
    """The cost model of the headline variants against the measured every:N cells: time per call
    against N (one identity change every N calls), a panel per package and placement."""
    models = costmodel.models(result)
    chosen = costmodel.headline_models(models)
    if not chosen:
        return None
    checks = costmodel.checks(result, models)
    panels = {}
    for m in chosen:
        panels.setdefault((m.info.package, m.info.place), []).append(m)
    handles = [variant_patch(HEADLINE_KEYS[label]) for label, _, _ in headline.VARIANTS]
    handles.append(matplotlib.lines.Line2D([], [], marker="o", color="black", linestyle="",
                                           markersize=4, label="measured every:N (95% interval)"))
    ncol = _legend_ncol(handles)
    extra = ("lines: the model from the run's steady and switch cells; points: the run's every:N "
             "cells" + ("; dotted: N = %g (report --every)" % every if every else ""))
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    top = HEADER_IN + _legend_in(handles, ncol) + 0.6
    bottom = _caption_in([result], extra) + 0.62
    hgap = 1.1
    panel_h = min(3.6, (HEADLINE_MAX_HEIGHT_IN - top - bottom - (nrows - 1) * hgap) / nrows)
    fig = Figure(figsize=(WIDTH_IN, top + bottom + nrows * panel_h + (nrows - 1) * hgap))
    grid, axis_w = _grid(fig, nrows, ncols, top, bottom, hgap_in=hgap)
    ns = [1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]
    for p, ((auth, place), group) in enumerate(panels.items()):
        ax = fig.add_subplot(grid[p // ncols, p % ncols])
        top_ns = max(m.predict(1) for m in group)
        div, unit = fmt.unit_for(top_ns)
        for m in group:
            k = HEADLINE_KEYS[headline.variant_of(m.info)]
            tag(ax.plot(ns, [m.predict(n) / div for n in ns], color=color(k), linewidth=1.5), k)
            got = [c for c in checks if c.model is m]
            if got:
                xs = [c.n for c in got]
                ys = [c.measured / div for c in got]
                err = [[max(0, c.measured - c.measured_interval[0]) / div for c in got],
                       [max(0, c.measured_interval[1] - c.measured) / div for c in got]]
                bars = ax.errorbar(xs, ys, yerr=err, fmt="o", color=color(k), markersize=4,
                                   capsize=2)
                tag([bars.lines[0]] + list(bars.lines[2]), k)
        if every:
            ax.axvline(every, color="black", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8, 16, 32, 64, 128])
        ax.set_xticklabels(["1", "2", "4", "8", "16", "32", "64", "128"])
        ax.set_xlabel("one identity change every N calls")
        ax.set_ylabel("time per call (%s)" % unit)
        ax.set_ylim(bottom=0)
        ax.set_title(_wrap(costmodel.group_label(group[0].info), int(axis_w / 0.075)))
        ax.grid(alpha=0.3)
    _legend_and_title(fig, handles, "Cost model: steady + (switch − steady) / N, against the "
                      "measured every:N cells", ncol)
    _caption(fig, [result], extra)
    return fig


def _ellipsize(text, limit):
    return text if len(text) <= limit else text[:limit // 2 - 1] + "…" + text[-(limit // 2):]


def plot_generic(result, cells=None):
    """(a) for files without cloakbench cells: the median time of every benchmark (or of `cells`)."""
    if cells is None:
        cells = [c for c in result.cells.values() if c.samples and not c.failed]
    if not cells:
        return None
    labels = [_ellipsize(c.name, 64) for c in cells]
    top, bottom = 0.75, _caption_in([result], SPREAD_TEXT) + 0.62
    fig = Figure(figsize=(WIDTH_IN, top + bottom + 0.32 * len(cells)))
    left = min(max(len(s) for s in labels) * 0.08 + 0.35, WIDTH_IN / 2)  # names: capitals, _
    grid, _ = _grid(fig, 1, 1, top, bottom, left_in=left, right_in=0.3)
    ax = fig.add_subplot(grid[0, 0])
    div, unit = fmt.unit_for(max(max(c.samples) for c in cells))
    ys = list(range(len(cells)))[::-1]
    for y, cell in zip(ys, cells):
        m = median(cell.samples) / div
        q1, q3 = (v / div for v in spread(cell.samples))
        ax.barh(y, m, 0.7, color=GENERIC_COLOR, xerr=[[max(m - q1, 0)], [max(q3 - m, 0)]],
                capsize=2)
        ax.scatter([s / div for s in cell.samples], [y] * len(cell.samples), s=5, color="black",
                   alpha=0.55, zorder=3, linewidths=0)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=9)
    ax.set_ylim(-0.6, len(cells) - 0.4)
    ax.set_xlabel("time per iteration (%s)" % unit)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    fig.suptitle("Time per iteration (cloakbench fields unknown: plain Google Benchmark file)",
                 fontsize=11, y=1.0 - 0.12 / fig.get_figheight(), va="top")
    _caption(fig, [result], SPREAD_TEXT)
    return fig


ROW_IN = 0.22          # one bar of the decomposition (a 9 pt label each)
ROW_GAP_IN = 1.1       # between two rows of panels: the upper's axis labels, the lower's title
PANEL_TITLE_IN = 0.5   # a panel's title (up to two lines)
MAX_PANEL_ROWS = 30
TWO_COLUMN_LABEL = 36  # row labels up to this many characters: two panels side by side
NEGATIVE_TEXT = "below zero"


def _decomposition_panels(result, headline_only):
    """(title, [(label, cell, decomposition)]) per panel: the headline tables, or every group of
    one-thread cells (long groups split in parts)."""
    panels = []
    if headline_only:
        for table in headline.tables(result):
            rows = [("%s | %s" % (r.variant, r.pattern), r.cell, r.terms) for r in table.rows
                    if r.terms is not None]
            if rows:
                panels.append((table.title, rows))
        return panels
    for key, cells in _groups(result, threads=1):
        rows = [(_short(c.info.short_label()), c, derive.decompose(result, c)) for c in cells]
        rows = [r for r in rows if r[2] is not None]
        rows.sort(key=lambda r: (_variant_key(r[1].info), _pattern_key(r[1].info.pattern)))
        size = -(-len(rows) // -(-len(rows) // MAX_PANEL_ROWS)) if rows else 1  # even parts
        parts = [rows[i:i + size] for i in range(0, len(rows), size)]
        for n, part in enumerate(parts):
            title = group_title(key) + ("" if len(parts) == 1 else " (part %d of %d)" % (
                n + 1, len(parts)))
            panels.append((title, part))
    return panels


def negative_label(value_ns, wide=True):
    """The text beside a negative term: its value with its sign and, where there is room, that it
    is drawn below zero (the legend says so too)."""
    return ("−%s (%s)" % (fmt.ns(-value_ns), NEGATIVE_TEXT)) if wide else "−" + fmt.ns(-value_ns)


def _draw_decomposition_panel(ax, title, rows, axis_w_in, label_in):
    """Each cell's positive terms stacked from zero; a negative remainder (the baselines add up to
    more than the cell) drawn on its own left of zero, hatched and labelled, so it never reads
    as time added; the measured time a diamond."""
    positive = max(max(d.measured, d.measured - min(d.remainder, 0.0)) for _, _, d in rows)
    negative = max(max(-d.remainder, 0.0) for _, _, d in rows)
    div, unit = fmt.unit_for(max(positive, negative))
    wide = axis_w_in >= 5.0
    ys = list(range(len(rows)))[::-1]
    for y, (_, cell, d) in zip(ys, rows):
        left = 0.0
        for comp in ("transport", "probe", "switch", "new_context", "service_ticket", "mic"):
            v = d.component(comp)
            if v:
                k = TERM_KEYS.get(comp, comp)
                tag(list(ax.barh(y, v / div, 0.7, left=left, color=color(k))), k)
                left += v / div
        if d.remainder >= 0:
            if d.remainder:
                tag(list(ax.barh(y, d.remainder / div, 0.7, left=left, color=color("remainder"))),
                    "remainder")
        else:  # baselines add up to more than the cell: the overlap, below zero and labelled
            bars = ax.barh(y, d.remainder / div, 0.7, left=0.0, facecolor="white",
                           edgecolor=NEGATIVE_EDGE, hatch="////", linewidth=1.0)
            tag(list(bars), "remainder", role="negative")
            ax.annotate(negative_label(d.remainder, wide), (d.remainder / div, y), xytext=(-4, 0),
                        textcoords="offset points", ha="right", va="center", fontsize=VALUE_PT,
                        color=NEGATIVE_TEXT_COLOR, linespacing=1.0)
        ax.plot([d.measured / div], [y], marker="D", color="black", markersize=4, zorder=4)
    if negative > 0:
        # room left of zero for the hatched bar and its label, in the axis' own units
        text_in = len(negative_label(-negative, wide)) * 0.068 + 0.15
        share = min(0.5, text_in / axis_w_in)
        span = (positive + negative) / div / (1.0 - share)
        ax.set_xlim(-negative / div - share * span, positive / div * 1.04)
        ax.axvline(0, color="black", linewidth=1.2)
    ax.set_yticks(ys)
    ax.set_yticklabels([label for label, _, _ in rows], fontsize=9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("time per call (%s)" % unit)
    # the title over the row labels and the axes together, from the labels' left edge
    ax.annotate(_wrap(title, int((label_in + axis_w_in) / 0.078)), (0, 1), xycoords="axes fraction",
                xytext=(-label_in * 72 + 4, 6), textcoords="offset points", ha="left",
                va="bottom", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def plot_decomposition(result, headline_only=False):
    """(b) Where the time goes: each cell split into its same-run baselines, as pages (two
    columns when the row labels are short, one otherwise) that each fit one screen;
    headline_only: just the headline cells."""
    panels = _decomposition_panels(result, headline_only)
    if not panels:
        return []
    handles = [variant_patch(TERM_KEYS.get(c, c), derive.COMPONENT_LABELS[c])
               for c in derive.COMPONENTS]
    handles.append(tag(Patch(facecolor="white", edgecolor=NEGATIVE_EDGE, hatch="////",
                             label="negative remainder: drawn below (left of) zero, not time added"),
                       "remainder", role="negative")[0])
    handles.append(matplotlib.lines.Line2D([], [], marker="D", color="black", linestyle="",
                                           markersize=4, label="measured time per call (median)"))
    ncol = _legend_ncol(handles)
    extra = ("probe = probes/call x baseline/probe; switch = switches/call x baseline/switch; "
             "new context = contexts/call x one new context (local: the raw round trip; kerberos: "
             "the AP exchange); a negative remainder (the baselines add up to more than the cell) "
             "is drawn hatched left of zero and labelled (docs/reading.md)")
    top = HEADER_IN + _legend_in(handles, ncol) + 0.15 + PANEL_TITLE_IN
    bottom_in = _caption_in([result], extra) + 0.62
    longest = max(len(label) for _, rows in panels for label, _, _ in rows)
    ncols = 2 if longest <= TWO_COLUMN_LABEL else 1
    label_in, right_in = longest * 0.068 + 0.25, 0.25
    axis_in = (WIDTH_IN - ncols * label_in - right_in) / ncols
    rows_of = [panels[i:i + ncols] for i in range(0, len(panels), ncols)]

    def axes_height(row):
        return ROW_IN * max(len(rows) for _, rows in row) + 0.1
    pages = _pack(rows_of, axes_height, MAX_HEIGHT_IN - top - bottom_in - 0.05, ROW_GAP_IN)
    figs = []
    for n, page in enumerate(pages):
        heights = [axes_height(p) for p in page]
        h = top + bottom_in + sum(heights) + ROW_GAP_IN * (len(page) - 1)
        fig = Figure(figsize=(WIDTH_IN, h))
        grid = fig.add_gridspec(len(page), ncols, height_ratios=heights,
                                hspace=ROW_GAP_IN / (sum(heights) / len(heights)),
                                wspace=label_in / axis_in, left=label_in / WIDTH_IN,
                                right=1 - right_in / WIDTH_IN, top=1 - top / h,
                                bottom=bottom_in / h)
        for r, row in enumerate(page):
            for c, (title, rows) in enumerate(row):
                _draw_decomposition_panel(fig.add_subplot(grid[r, c]), title, rows, axis_in,
                                          label_in)
        _legend_and_title(fig, handles, ("Where the time goes: the headline cells decomposed into "
                                         "baselines of the same run" if headline_only else
                                         "Where the time goes: each cell decomposed into baselines "
                                         "of the same run") + _page_note(n, len(pages)), ncol)
        _caption(fig, [result], extra)
        figs.append(fig)
    return figs


def ratio_label(name):
    """A short label for a same-run ratio name."""
    base, _, over = name.partition(" ÷ ")
    i = names.parse_name(base)
    if not i.is_cell:
        return name
    where = "%s %s%s %dB" % (i.transport, "" if i.place == "na" else i.place + " ",
                            "t%d" % i.threads, i.bytes)
    return "%s | %s  ÷ %s" % (where, i.short_label(), over)


def _over_none_ratios(result, headline_only):
    ratios = {}
    for n, s in derive.same_run_ratios(result).items():
        if not (n.endswith(derive.RATIO_OVER_NONE) and s.samples):
            continue
        info = names.parse_name(n[: -len(derive.RATIO_OVER_NONE)])
        if info.threads != 1:
            continue
        if headline_only and not headline.is_headline_cell(info):
            continue
        ratios[n] = s
    return ratios


def _headline_rank(name):
    info = names.parse_name(name.partition(" ÷ ")[0])
    if not headline.is_headline_cell(info):
        return (1,)
    order = [label for label, _, _ in headline.VARIANTS]
    return (0, headline.AUTH_ORDER.get(info.package, 9), headline.PINNED.index(info.place),
            headline.PATTERNS.index(info.pattern), order.index(headline.variant_of(info)))


def plot_machines(results, headline_only=False):
    """(c) The same-run ratios of several files (machines) side by side, the headline cells first,
    as pages that each fit one screen; headline_only: just the headline cells. [] when fewer than
    two files have ratios."""
    series = []
    for r in results:
        ratios = _over_none_ratios(r, headline_only)
        if ratios:
            series.append((r, ratios))
    if len(series) < 2:
        return []
    order = []
    for _, ratios in series:
        order += [n for n in ratios if n not in order]
    order.sort(key=_headline_rank)  # stable: file order within the rest
    handles = [Patch(color=machine_color(si), label="%s (commit %s)" % (r.machine_id, r.commit))
               for si, (r, _) in enumerate(series)]
    ncol = _legend_ncol(handles)
    extra = "bars: median ratio over the repetitions; whiskers: interquartile range"
    per_row = max(0.24, 0.14 * len(series) + 0.1)
    top = HEADER_IN + _legend_in(handles, ncol) + 0.1
    bottom_in = _caption_in([r for r, _ in series], extra) + 0.6
    per_page = max(1, int((MAX_HEIGHT_IN - top - bottom_in - 0.2) / per_row))
    pages = [order[i:i + per_page] for i in range(0, len(order), per_page)]
    labels = {nm: ratio_label(nm) for nm in order}
    left = min(max(len(s) for s in labels.values()) * 0.068 + 0.3, WIDTH_IN * 0.6)
    figs = []
    for n, page in enumerate(pages):
        fig = Figure(figsize=(WIDTH_IN, top + bottom_in + per_row * len(page) + 0.2))
        grid, _ = _grid(fig, 1, 1, top, bottom_in, left_in=left, right_in=0.3)
        ax = fig.add_subplot(grid[0, 0])
        height = 0.8 / len(series)
        ys = list(range(len(page)))[::-1]
        for si, (r, ratios) in enumerate(series):
            for y, name in zip(ys, page):
                s = ratios.get(name)
                if s is None:
                    continue
                yy = y + 0.4 - height * (si + 0.5)
                m = median(s.samples)
                q1, q3 = spread(s.samples)
                ax.barh(yy, m, height * 0.9, color=machine_color(si),
                        xerr=[[max(m - q1, 0)], [max(q3 - m, 0)]], capsize=1.5)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(ys)
        ax.set_yticklabels([labels[nm] for nm in page], fontsize=9)
        ax.set_ylim(-0.6, len(page) - 0.4)
        ax.set_xlabel("cloaked cell ÷ the same cell without cloaking (×, measured in one run)")
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        _legend_and_title(fig, handles, "Same-run ratios across machines%s%s" % (
            " (headline cells)" if headline_only else "", _page_note(n, len(pages))), ncol)
        _caption(fig, [r for r, _ in series], extra)
        figs.append(fig)
    return figs


THREAD_QUANTITIES = {
    # kind: (figure title, axis label, value of one repetition from its real_time in ns and threads)
    "thread_throughput": (
        "Throughput with client threads: calls per second of all client threads together",
        "calls/s, all threads",
        lambda ns, threads: 1e9 / ns),
    "thread_latency": (
        "Latency with client threads: mean time of one call as its client thread sees it",
        "mean time per call (µs)",
        lambda ns, threads: ns * threads / 1e3),
}
THREAD_NOTES = {
    "thread_throughput": "calls per second = 1 ÷ real_time (Google Benchmark divides the threads' "
                         "mean wall time by the calls of all threads: the inverse of the combined "
                         "throughput)",
    "thread_latency": "mean time per call = threads × real_time (each thread's wall time ÷ its own "
                      "calls); not the combined throughput's inverse, which is the other figure",
}


def _per_second(y, _=None):
    """A tick of calls per second: 0, 500, 20k, 1.5M."""
    for scale, unit in ((1e6, "M"), (1e3, "k")):
        if abs(y) >= scale:
            return "%g%s" % (round(y / scale, 3), unit)
    return "%g" % y


def _thread_series(result):
    """{group key without threads: {pattern: {variant label: [cells by threads]}}}, only variants
    measured at more than one thread count."""
    series = {}
    for cell in result.cells.values():
        i = cell.info
        if i.is_cell and cell.samples and not cell.failed:
            key = i.group_key()[:-1] + (None,)
            series.setdefault(key, {}).setdefault(i.pattern, {}).setdefault(
                i.variant_label(), []).append(cell)
    out = []
    for key, patterns in series.items():
        kept = {}
        for pattern, lines in patterns.items():
            lines = {label: sorted(cells, key=lambda c: c.info.threads)
                     for label, cells in lines.items() if len({c.info.threads for c in cells}) > 1}
            if lines:
                kept[pattern] = lines
        if kept:
            out.append((key, kept))
    order = dict((k, n) for n, (k, _) in enumerate(_groups(result, threads=None)))
    out.sort(key=lambda kv: min((n for k, n in order.items() if k[:-1] == kv[0][:-1]),
                                default=len(order)))
    return out


def plot_threads(result, kind):
    """(d) Throughput (kind thread_throughput) or latency (thread_latency) against the number of
    client threads, never one for the other: a row per transport/placement/payload, a panel per
    token pattern, a line per cloaking variant; three rows a page."""
    title, ylabel, value = THREAD_QUANTITIES[kind]
    groups = _thread_series(result)
    if not groups:
        return []
    infos = [c.info for _, pats in groups for lines in pats.values() for cells in lines.values()
             for c in cells]
    keys = _variant_keys(infos)
    handles = [variant_patch(k) for k in keys]
    ncol = _legend_ncol(handles)
    extra = "points: median of the repetitions; whiskers: interquartile range; " + THREAD_NOTES[kind]
    panel_h, gap = 1.75, 1.2
    top = HEADER_IN + _legend_in(handles, ncol) + 0.85
    bottom = _caption_in([result], extra) + 0.62
    rows_per_page = max(1, int((MAX_HEIGHT_IN - top - bottom + gap) // (panel_h + gap)))
    pages = [groups[i:i + rows_per_page] for i in range(0, len(groups), rows_per_page)]
    figs = []
    for n, page in enumerate(pages):
        patterns = sorted({p for _, pats in page for p in pats}, key=_pattern_key)
        fig = Figure(figsize=(WIDTH_IN, top + bottom + len(page) * panel_h + (len(page) - 1) * gap))
        grid, _ = _grid(fig, len(page), len(patterns), top, bottom, left_in=1.0, wgap_in=0.55,
                        hgap_in=gap)
        for r, (key, pats) in enumerate(page):
            first = None
            for c, pattern in enumerate(patterns):
                ax = fig.add_subplot(grid[r, c])
                first = first or ax
                lines = pats.get(pattern)
                if not lines:
                    ax.set_axis_off()
                    continue
                threads = set()
                for label, cells in sorted(lines.items(), key=lambda kv: _variant_key(
                        kv[1][0].info)):
                    k = variant_key(cells[0].info)
                    xs = [c_.info.threads for c_ in cells]
                    vals = [[value(s, c_.info.threads) for s in c_.samples] for c_ in cells]
                    ms = [median(v) for v in vals]
                    qs = [spread(v) for v in vals]
                    err = [[max(m - q[0], 0) for m, q in zip(ms, qs)],
                           [max(q[1] - m, 0) for m, q in zip(ms, qs)]]
                    bars = ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, markersize=3.5,
                                       linewidth=1.3, color=color(k))
                    tag([bars.lines[0]], k)
                    threads.update(xs)
                ax.set_xscale("log", base=2)
                ax.set_xticks(sorted(threads))
                ax.set_xticklabels([str(t) for t in sorted(threads)])
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
                ax.set_xlim(min(threads) / 1.3, max(threads) * 1.3)
                ax.set_ylim(bottom=0)
                if kind == "thread_throughput":
                    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_per_second))
                ax.set_xlabel("client threads")
                ax.set_title(pattern)
                ax.grid(alpha=0.3)
            first.set_ylabel(ylabel)
            # the row's heading, over its panels
            box = grid[r, 0].get_position(fig)
            fig.text(0.01, box.y1 + 0.42 / fig.get_figheight(), group_title(key) + ", by token "
                     "pattern", ha="left",
                     va="bottom", fontsize=10.5, fontweight="bold")
        _legend_and_title(fig, handles, title + _page_note(n, len(pages)), ncol)
        _caption(fig, [result], extra)
        figs.append(fig)
    return figs


def plot_thread_throughput(result):
    return plot_threads(result, "thread_throughput")


def plot_thread_latency(result):
    return plot_threads(result, "thread_latency")


def plot_generic_pages(result, per_page=22):
    """plot_generic for files without cloakbench cells, in pages of per_page benchmarks."""
    cells = [c for c in result.cells.values() if c.samples and not c.failed]
    return [plot_generic(result, cells[i:i + per_page]) for i in range(0, len(cells), per_page)]


def save(fig, out_dir, stem):
    """Write fig as stem.png and stem.svg; return both paths."""
    paths = []
    for ext in ("png", "svg"):
        path = os.path.join(out_dir, "%s.%s" % (stem, ext))
        kwargs = {"dpi": DPI} if ext == "png" else {"metadata": {"Date": None}}
        fig.savefig(path, format=ext, facecolor="white", **kwargs)
        if ext == "png":
            quantize_png(path)
        paths.append(path)
    return paths


def quantize_png(path):
    """Re-encode a PNG with a 256-colour palette: a quarter of the bytes, no visible change (flat
    colours and anti-aliased text on white), so a report.html with every figure stays small. The
    fast octree quantizer: a third of median cut's time for smaller files, every pixel within 14 of
    256 levels of the original on the reference run's figures."""
    try:
        from PIL import Image  # python3-pil, which Debian's matplotlib depends on
    except ImportError:
        return
    with Image.open(path) as im:
        q = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                       dither=Image.Dither.NONE)
    q.save(path, optimize=True)


def file_stems(results):
    """A distinct file-name stem per result, from its file name."""
    stems, seen = [], {}
    for r in results:
        stem = os.path.splitext(os.path.basename(r.path))[0] or "result"
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        stems.append(stem if n == 0 else "%s-%d" % (stem, n + 1))
    return stems


MAIN, APPENDIX = "main", "appendix"
KIND_TITLES = {"headline": "Headline: cost per call", "cost_model": "Cost model against every:N",
               "decomposition": "Where the time goes: the headline cells",
               "cost_per_call": "Cost per call, every cell",
               "decomposition_all": "Where the time goes, every cell",
               "thread_throughput": "Throughput with client threads (calls per second)",
               "thread_latency": "Latency with client threads (mean time per call)",
               "same_run_ratios": "Same-run ratios across machines",
               "latency": "Latency distributions of the headline (paired blocks)",
               "under_load": "Under load: cost per call and hit rate against the cache size",
               "load_throughput": "Under load: throughput against worker threads (closed loop)",
               "load_latency": "Under load: p99 latency against the arrival rate (open loop)"}


# The headline variants of the blocks, in the order the latency figure draws them.
BLOCK_VARIANTS = ("none", "static", "dynamic", "dynamic_lru")
BLOCK_VARIANT_LABELS = {"none": "none", "static": "static", "dynamic": "dynamic, cache none",
                        "dynamic_lru": "dynamic, cache lru:4"}
_PERCENTILES = (0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999)


def plot_latency(result):
    """The headline's latency distributions from the paired blocks' merged histograms: one panel
    per package, placement and pattern, each variant's percentiles p50 ... p99.9 against
    1/(1 − q) on log axes (a tail reads as a line rising to the right). None without blocks."""
    from . import blocks as blk
    from . import firstscreen
    tables = firstscreen.tables(result)
    panels = []
    for b in sorted(result.blocks, key=lambda b: (
            firstscreen.PACKAGE_ORDER.get(b.get("package"), 9),
            firstscreen.PLACE_ORDER.get(b.get("place"), 9),
            firstscreen.PATTERNS.index(b["pattern"]) if b.get("pattern") in firstscreen.PATTERNS else 9)):
        if b.get("variants"):
            panels.append(b)
    if not tables or not panels:
        return None
    handles = [variant_patch(v) for v in BLOCK_VARIANTS]
    ncol = _legend_ncol(handles)
    extra = "x: percentile (log of 1/(1 − q)); y: µs per call, log"
    ncols = 3
    nrows = (len(panels) + ncols - 1) // ncols
    top = HEADER_IN + _legend_in(handles, ncol) + 0.35
    bottom = _caption_in([result], extra) + 0.4
    hgap = 0.75
    panel_h = min(2.6, (HEADLINE_MAX_HEIGHT_IN - top - bottom - (nrows - 1) * hgap) / nrows)
    fig = Figure(figsize=(WIDTH_IN, top + bottom + nrows * panel_h + (nrows - 1) * hgap), dpi=DPI)
    grid, _ = _grid(fig, nrows, ncols, top, bottom, left_in=0.8, wgap_in=0.8, hgap_in=hgap)
    xs = [1.0 / (1.0 - q) for q in _PERCENTILES]
    for i, b in enumerate(panels):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        for v in BLOCK_VARIANTS:
            h = ((b["variants"].get(v) or {}).get("histogram") or {}).get("all")
            if not h or not h.get("count"):
                continue
            ys = [blk.percentile(h, q) / 1000.0 for q in _PERCENTILES]
            tag(ax.plot(xs, ys, marker="o", markersize=3, color=color(v),
                        label=BLOCK_VARIANT_LABELS[v]), v)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs[::2] + [xs[-1]] if len(xs) % 2 == 0 else xs[::2])
        ax.set_xticklabels(["p%g" % (100 * q) for q in _PERCENTILES][::2])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        # labels at 1, 2 and 5 of each decade only: no crowding at 9.5 pt
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: "%g" % y))
        ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(base=10, subs=(3.0, 4.0, 6.0,
                                                                               7.0, 8.0, 9.0)))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel("µs per call")
        ax.set_title("%s, place:%s, %s" % (b.get("package"), b.get("place"), b.get("pattern")))
        ax.grid(True, which="both", alpha=0.3)
    _legend_and_title(fig, handles, "Latency per call: percentiles of every timed call in the "
                                    "paired blocks (launches merged)", ncol)
    _caption(fig, [result], extra)
    return fig


def _panels_figure(result, count, handles, extra, left_in, right_in, wgap_in):
    """A figure of `count` panels, two a row, under a legend of `handles` and over a caption:
    (figure, gridspec, columns, legend columns). The under-load figures share it."""
    ncol = _legend_ncol(handles)
    ncols = min(count, 2)
    nrows = -(-count // ncols)
    top = HEADER_IN + _legend_in(handles, ncol) + 0.35
    bottom = _caption_in([result], extra) + 0.62
    hgap = 1.0
    panel_h = min(3.2, (HEADLINE_MAX_HEIGHT_IN - top - bottom - (nrows - 1) * hgap) / nrows)
    fig = Figure(figsize=(WIDTH_IN, top + bottom + nrows * panel_h + (nrows - 1) * hgap), dpi=DPI)
    grid, _ = _grid(fig, nrows, ncols, top, bottom, left_in=left_in, right_in=right_in,
                    wgap_in=wgap_in, hgap_in=hgap)
    return fig, grid, ncols, ncol


def plot_under_load(result):
    """Issue 19's figure: for each package and population of the run's load cells, dynamic
    cloaking's cost per call against the lru cache size (log), with the cache-none, none and static
    cells as horizontal lines, and the measured hit rate on a second axis. None without lru load
    cells."""
    panels = []
    for (auth, clients, pop), cells in costmodel.load_groups(result).items():
        lru = []
        for c in cells:
            m = re.fullmatch(r"lru:(\d+)", c.info.cache or "")
            if m and c.info.cloaking == "dynamic" and not c.failed and c.samples:
                lru.append((int(m.group(1)), c))
        if lru:
            flat = [c for c in cells if not c.failed and c.samples and
                    (c.info.cloaking != "dynamic" or c.info.cache == "none")]
            panels.append(((auth, clients, pop), lru, flat))
    if not panels:
        return None
    handles = [variant_patch("dynamic_lru", "dynamic, lru:N (cost per call)"),
               variant_patch("dynamic", "dynamic, cache none"), variant_patch("none"),
               variant_patch("static"),
               matplotlib.lines.Line2D([], [], color="black", linestyle="--", marker="s",
                                       markersize=4, label="hit rate (right axis)")]
    extra = "x: lru cache size N (log); left: time per call; right: measured hit rate"
    fig, grid, ncols, ncol = _panels_figure(result, len(panels), handles, extra, left_in=0.85,
                                            right_in=0.85, wgap_in=1.4)
    for i, ((auth, clients, pop), lru, flat) in enumerate(panels):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        lru.sort(key=lambda nc: nc[0])
        top_ns = max([median(c.samples) for _, c in lru] + [median(c.samples) for c in flat])
        div, unit = fmt.unit_for(top_ns)
        xs = [n for n, _ in lru]
        tag(ax.plot(xs, [median(c.samples) / div for _, c in lru], marker="o", markersize=4,
                    color=color("dynamic_lru")), "dynamic_lru")
        for c in flat:
            k = variant_key(c.info)
            tag(ax.axhline(median(c.samples) / div, color=color(k), linewidth=1.2), k)
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([str(n) for n in xs])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylim(bottom=0)
        ax.set_xlabel("lru cache size N (contexts)")
        ax.set_ylabel("time per call (%s)" % unit)
        ax.set_title("%s, %s clients, %s" % (auth, "{:,}".format(clients or 0), pop))
        ax.grid(alpha=0.3)
        rate = ax.twinx()
        rate.plot(xs, [100.0 * (c.counter("hit_rate") or 0.0) for _, c in lru], color="black",
                  linestyle="--", marker="s", markersize=4)
        rate.set_ylim(0, 100)
        rate.set_ylabel("hit rate (%)")
    _legend_and_title(fig, handles, "Under load: cost per call and hit rate against the cache size",
                      ncol)
    _caption(fig, [result], extra)
    return fig


# The threaded load cells' cloaking modes, as PALETTE names (dynamic runs with an lru cache).
_LOAD_MODE_KEYS = {"none": "none", "static": "static", "dynamic": "dynamic_lru"}
# A proxy per worker thread: solid lines; one shared proxy: dashed.
_SHAPE_STYLES = {"apartment": ("-", "o", "a proxy per thread"),
                 "shared": ("--", "s", "one shared proxy")}


def _load_thread_handles(modes):
    handles = [variant_patch(_LOAD_MODE_KEYS[m], "dynamic, lru cache" if m == "dynamic" else m)
               for m in ("none", "static", "dynamic") if m in modes]
    for shape, (style, marker, label) in _SHAPE_STYLES.items():
        handles.append(matplotlib.lines.Line2D([], [], color="black", linestyle=style,
                                               marker=marker, markersize=4, label=label))
    return handles


def _load_panels(result):
    """{(auth, clients): {(cloaking, shape): group}} of the threaded load cells."""
    panels = {}
    for (auth, clients, cloaking, shape), g in costmodel.thread_groups(result).items():
        panels.setdefault((auth, clients), {})[(cloaking, shape)] = g
    return panels




def plot_load_throughput(result):
    """Issue 19: closed-loop throughput (calls a second, all workers together) against the number
    of worker threads, a panel per package, a line per cloaking mode and proxy shape. Throughput
    only: latency is the other figure. None without threaded load cells."""
    panels = _load_panels(result)
    panels = {k: v for k, v in panels.items() if any(g["closed"] for g in v.values())}
    if not panels:
        return None
    handles = _load_thread_handles({c for v in panels.values() for c, _ in v})
    extra = ("closed loop: each worker calls as fast as it can; y: calls a second of all workers "
             "together (not a time per call); x: worker threads (log 2)")
    fig, grid, ncols, ncol = _panels_figure(result, len(panels), handles, extra, 0.95, 0.3, 1.0)
    for i, ((auth, clients), groups) in enumerate(panels.items()):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        counts = set()
        for (cloaking, shape), g in sorted(groups.items(), key=lambda kv: (
                costmodel.CLOAKING_ORDER.get(kv[0][0], 9), kv[0][1])):
            xs = sorted(g["closed"])
            if not xs:
                continue
            counts.update(xs)
            style, marker, _ = _SHAPE_STYLES.get(shape, ("-", "o", shape))
            key = _LOAD_MODE_KEYS.get(cloaking, cloaking)
            tag(ax.plot(xs, [g["closed"][t].counter("calls_per_s") for t in xs], linestyle=style,
                        marker=marker, markersize=4, color=color(key)), key)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(counts))
        ax.set_xticklabels([str(t) for t in sorted(counts)])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_per_second))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("worker threads")
        ax.set_ylabel("calls/s, all workers")
        ax.set_title("%s, %s clients" % (auth, "{:,}".format(clients or 0)))
        ax.grid(alpha=0.3)
    _legend_and_title(fig, handles, "Under load: throughput against worker threads (closed loop)",
                      ncol)
    _caption(fig, [result], extra)
    return fig


def plot_load_latency(result):
    """Issue 19: p99 latency (from each request's due time) against the arrival rate actually
    offered in the open loop, a panel per package, a line per cloaking mode and proxy shape; a
    dotted line marks each mode's closed-loop throughput at the same thread count. Latency only:
    throughput is the other figure. None without open-loop cells."""
    panels = _load_panels(result)
    panels = {k: v for k, v in panels.items() if any(g["open"] for g in v.values())}
    if not panels:
        return None
    handles = _load_thread_handles({c for v in panels.values() for c, _ in v})
    extra = ("open loop: Poisson arrivals at a set fraction of the closed loop's throughput; y: p99 "
             "from each request's due time (log); x: arrivals a second offered; dotted: the closed "
             "loop's throughput at the same thread count")
    fig, grid, ncols, ncol = _panels_figure(result, len(panels), handles, extra, 0.95, 0.3, 1.0)
    for i, ((auth, clients), groups) in enumerate(panels.items()):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        top = 0.0
        for (cloaking, shape), g in sorted(groups.items(), key=lambda kv: (
                costmodel.CLOAKING_ORDER.get(kv[0][0], 9), kv[0][1])):
            if not g["open"]:
                continue
            threads = max(g["open"], key=lambda t: len(g["open"][t]))
            cells = [g["open"][threads][p] for p in sorted(g["open"][threads])]
            pts = [(c.counter("offered_per_s"), c.counter("p99_ns")) for c in cells
                   if c.counter("offered_per_s") and c.counter("p99_ns")]
            if not pts:
                continue
            style, marker, _ = _SHAPE_STYLES.get(shape, ("-", "o", shape))
            key = _LOAD_MODE_KEYS.get(cloaking, cloaking)
            tag(ax.plot([x for x, _ in pts], [y / 1e3 for _, y in pts], linestyle=style,
                        marker=marker, markersize=4, color=color(key)), key)
            top = max(top, max(y for _, y in pts) / 1e3)
            closed = g["closed"].get(threads)
            if closed is not None and closed.counter("calls_per_s"):
                tag(ax.axvline(closed.counter("calls_per_s"), color=color(key), linestyle=":",
                               linewidth=1.0), key)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: "%g" % y))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_per_second))
        ax.set_xlim(left=0)
        ax.set_xlabel("arrivals offered (calls/s)")
        ax.set_ylabel("p99 latency (µs)")
        ax.set_title("%s, %s clients" % (auth, "{:,}".format(clients or 0)))
        ax.grid(alpha=0.3, which="both")
    _legend_and_title(fig, handles, "Under load: p99 latency against the arrival rate (open loop)",
                      ncol)
    _caption(fig, [result], extra)
    return fig


def figures_for(result, every=None):
    """(section, kind, [pages]) for every plot one file supports, in report order: the headline
    figures first (section MAIN), the full matrix after (section APPENDIX). A kind with no cells
    has no pages."""
    def one(fig):
        return [fig] if fig is not None else []
    latency = (MAIN, "latency", one(plot_latency(result))) if result.blocks else None
    under_load = plot_under_load(result)
    loaded = [(MAIN, "under_load", [under_load])] if under_load is not None else []
    # Throughput and latency under load in figures of their own, never one read as the other.
    for kind, fig in (("load_throughput", plot_load_throughput(result)),
                      ("load_latency", plot_load_latency(result))):
        if fig is not None:
            loaded.append((MAIN, kind, [fig]))
    if not any(c.info.is_cell for c in result.cells.values()):
        return ([latency] if latency else loaded or
                [(MAIN, "cost_per_call", plot_generic_pages(result))])
    return ([latency] if latency else []) + loaded + [(MAIN, "headline", one(plot_headline(result))),
            (MAIN, "cost_model", one(plot_cost_model(result, every))),
            (MAIN, "decomposition", plot_decomposition(result, headline_only=True)),
            (APPENDIX, "cost_per_call", plot_cost_per_call(result)),
            (APPENDIX, "decomposition_all", plot_decomposition(result)),
            (APPENDIX, "thread_throughput", plot_thread_throughput(result)),
            (APPENDIX, "thread_latency", plot_thread_latency(result))]


def page_stem(stem, kind, n):
    """stem.kind for the first page, stem.kind-2 ... for the others."""
    return "%s.%s" % (stem, kind) if n == 0 else "%s.%s-%d" % (stem, kind, n + 1)


@dataclasses.dataclass
class Written:
    section: str
    kind: str
    page: int
    pages: int
    png: str
    svg: str

    @property
    def title(self):
        return KIND_TITLES.get(self.kind, self.kind) + _page_note(self.page, self.pages)


def write_figures(result, out_dir, stem, every=None, notes=None):
    """Write every plot of one file; return [Written] in report order. A kind the file has no
    cells for adds a line to `notes` (a list) when given."""
    matplotlib.rcParams["svg.hashsalt"] = "cloakbench"  # stable SVG ids: plots diff cleanly
    out = []
    for section, kind, figs in figures_for(result, every):
        if not figs and notes is not None:
            notes.append("%s: no cells for the %s plot" % (result.path, kind.replace("_", " ")))
        for n, fig in enumerate(figs):
            png, svg = save(fig, out_dir, page_stem(stem, kind, n))
            out.append(Written(section, kind, n, len(figs), png, svg))
    return out


def write_machines(results, out_dir, headline_only=False, section=APPENDIX):
    """Write the same-run ratios of several files; return [Written]."""
    matplotlib.rcParams["svg.hashsalt"] = "cloakbench"
    figs = plot_machines(results, headline_only)
    stem = MACHINES_STEM + (".headline" if headline_only else "")
    out = []
    for n, fig in enumerate(figs):
        png, svg = save(fig, out_dir, stem if n == 0 else "%s-%d" % (stem, n + 1))
        out.append(Written(section, "same_run_ratios", n, len(figs), png, svg))
    return out


def write_plots(results, out_dir, every=None):
    """Write every plot the files support into out_dir; return (paths written, notes on
    plots that could not be drawn)."""
    written, notes = [], []
    for result, stem in zip(results, file_stems(results)):
        for w in write_figures(result, out_dir, stem, every, notes):
            written += [w.png, w.svg]
    if len(results) > 1:
        figs = write_machines(results, out_dir)
        if not figs:
            notes.append("same-run ratios need at least two files with cloakbench matrix cells")
        for w in figs:
            written += [w.png, w.svg]
    return written, notes

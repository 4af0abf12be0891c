"""Plots of result files as PNG and SVG: the headline, the cost model, cost per call, where the
time goes, same-run ratios across machines, and scaling with client threads. Every figure fits
one screen (at most 1600 x 1200 px; the headline at most 1600 x 1000): a long one is split into
pages."""

import dataclasses
import os
import re
import textwrap

import matplotlib
matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)
from matplotlib.patches import Patch  # noqa: E402

from . import costmodel, derive, fmt, headline, names  # noqa: E402
from .stats import median, spread  # noqa: E402

# One color per variant and per component, the same in every plot.
_VARIANT_COLORS = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                   "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
COMPONENT_COLORS = {"transport": "#9e9e9e", "probe": "#ff7f0e", "switch": "#1f77b4",
                    "new_context": "#d62728", "service_ticket": "#9467bd", "mic": "#8c564b",
                    "remainder": "#2ca02c"}
_PATTERN_ORDER = {"steady": 0, "switch": 1, "reimpersonate": 3}
_PLACE_TEXT = {"same": "client and downstream on one CPU", "cross": "on different CPUs",
               "unpinned": "unpinned", "na": "in process"}
SPREAD_TEXT = "bars: median of the repetitions; whiskers: interquartile range; dots: repetitions"

PLOT_KINDS = ("headline", "cost_model", "decomposition", "cost_per_call", "thread_scaling")
MACHINES_STEM = "machines.same_run_ratios"
DPI = 110
MAX_WIDTH_IN = 1600.0 / DPI
MAX_HEIGHT_IN = 1200.0 / DPI
HEADLINE_MAX_HEIGHT_IN = 1000.0 / DPI
WIDTH_IN = 14.0


def machine_color(n):
    """The color of the n-th machine (file) in plots that put machines side by side."""
    return _VARIANT_COLORS[(n + 1) % len(_VARIANT_COLORS)]


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
    order = {"none": 0, "static": 1, "dynamic": 2}
    cache = info.cache or ""
    return (order.get(info.cloaking, 3), info.probe or "", cache not in ("none", "na"), cache)


def _variant_colors(infos):
    variants = sorted({(_variant_key(i), i.variant_label()) for i in infos})
    return {label: _VARIANT_COLORS[n % len(_VARIANT_COLORS)]
            for n, (_, label) in enumerate(variants)}


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
    auth_order = {"local": 0, "kerberos": 1, "ntlm": 2, "negotiate": 3}
    # key: backend, transport, auth, prot, tickets, place, bytes, threads
    return sorted(groups.items(), key=lambda kv: (kv[0][0] != "kernel", auth_order.get(kv[0][2], 9),
                                                  str(kv[0][3]), str(kv[0][4]),
                                                  place_order.get(kv[0][5], 9), kv[0][6], kv[0][7]))


def _caption(fig, results, extra=""):
    lines = [r.caption() for r in results]
    if extra:
        lines.append(extra)
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=7.5, va="bottom", ha="left", color="#333333")
    return 0.12 * len(lines) + 0.1  # inches the caption needs


def _finish(fig, top_in, bottom_in):
    h = fig.get_figheight()
    fig.subplots_adjust(top=1.0 - top_in / h, bottom=bottom_in / h)


def _empty_notice(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _draw_cost_panel(ax, key, cells, colors, title=None, interval=False):
    """Bars per cloaking variant grouped by token pattern; whiskers the interquartile range (or the
    95% interval of the median), dots the repetitions, the median printed on each bar."""
    patterns = sorted({c.info.pattern for c in cells}, key=_pattern_key)
    variants = [label for label in colors if any(c.info.variant_label() == label for c in cells)]
    width = 0.8 / max(len(variants), 1)
    live = [c for c in cells if c.samples and not c.failed]
    div, unit = fmt.unit_for(max((max(c.samples) for c in live), default=1.0))
    first = -len(variants) * width / 2.0
    rotate = len(variants) * len(patterns) > 8
    for vi, label in enumerate(variants):
        for pi, pattern in enumerate(patterns):
            cell = next((c for c in cells if c.info.pattern == pattern
                         and c.info.variant_label() == label), None)
            if cell is None:
                continue
            x = pi + first + width * (vi + 0.5)
            if cell.failed or not cell.samples:
                ax.text(x, 0, "failed", rotation=90, ha="center", va="bottom",
                        color="#b00020", fontsize=8, fontweight="bold")
                continue
            m = median(cell.samples) / div
            if interval:
                lo, hi, _ = headline.median_interval(cell.samples)
                q1, q3 = lo / div, hi / div
            else:
                q1, q3 = (v / div for v in spread(cell.samples))
            ax.bar(x, m, width * 0.92, color=colors[label],
                   yerr=[[max(m - q1, 0)], [max(q3 - m, 0)]], capsize=2,
                   error_kw={"elinewidth": 0.9})
            ax.scatter([x] * len(cell.samples), [v / div for v in cell.samples], s=5,
                       color="black", alpha=0.55, zorder=3, linewidths=0)
            ax.annotate(fmt.ns(median(cell.samples)), (x, max(q3, m)), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom",
                        fontsize=6.5 if rotate else 7.5, rotation=90 if rotate else 0)
    ax.margins(y=0.3 if rotate else 0.15)
    ax.set_xlim(-0.5, len(patterns) - 0.5)
    ax.set_xticks(range(len(patterns)))
    ax.set_xticklabels(patterns, fontsize=8.5)
    ax.set_xlabel("token pattern", fontsize=8.5)
    ax.set_ylabel("time per call (%s)" % unit)
    ax.set_title(_wrap(title or group_title(key)), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _grid_page(rows_of_panels, row_height, top_in, bottom_in, hspace_in=0.75, ncols=2,
               width=WIDTH_IN):
    """A figure with len(rows_of_panels) rows of up to ncols axes; returns (fig, axes per panel)."""
    n_rows = len(rows_of_panels)
    height = top_in + bottom_in + n_rows * row_height + (n_rows - 1) * hspace_in
    fig = Figure(figsize=(width, height))
    ncols = min(ncols, max(len(panels) for panels in rows_of_panels))  # one panel: full width
    grid = fig.add_gridspec(n_rows, ncols, hspace=hspace_in / row_height, wspace=0.25)
    axes = []
    for r, panels in enumerate(rows_of_panels):
        for c, _ in enumerate(panels):
            axes.append(fig.add_subplot(grid[r, c]))
    return fig, axes


def _legend_and_title(fig, handles, title, ncol=4):
    h = fig.get_figheight()
    fig.legend(handles=handles, loc="upper center", ncol=min(ncol, len(handles)), fontsize=8.5,
               bbox_to_anchor=(0.5, 1.0 - 0.42 / h))
    fig.suptitle(title, fontsize=12.5, y=1.0 - 0.08 / h)


def plot_cost_per_call(result):
    """(a) Time per call for each cloaking x token pattern, a panel per transport/placement,
    four panels a page."""
    groups = _groups(result, threads=1)
    if not groups:
        groups = _groups(result, threads=None)
    if not groups:
        return []
    colors = _variant_colors(c.info for _, cells in groups for c in cells)
    handles = [Patch(color=c, label="cloaking: " + label) for label, c in colors.items()]
    legend_rows = -(-len(handles) // 3)
    pages = [groups[i:i + 4] for i in range(0, len(groups), 4)]
    figs = []
    for n, page in enumerate(pages):
        rows = [page[i:i + 2] for i in range(0, len(page), 2)]
        top = 0.75 + 0.22 * legend_rows
        fig, axes = _grid_page(rows, 3.0, top, 1.05, hspace_in=0.95)
        for ax, (key, cells) in zip(axes, page):
            _draw_cost_panel(ax, key, cells, colors)
        _legend_and_title(fig, handles, "Cost per downstream call by cloaking and token pattern"
                          + _page_note(n, len(pages)), ncol=3)
        bottom = _caption(fig, [result], SPREAD_TEXT)
        _finish(fig, top, bottom + 0.55)
        figs.append(fig)
    return figs


def plot_headline(result):
    """The headline cells (headline.tables): one panel per authentication package and pinned
    placement, bars per variant grouped by token pattern, whiskers the 95% interval of the median."""
    tables = headline.tables(result)
    if not tables:
        return None
    colors = {label: _VARIANT_COLORS[i % len(_VARIANT_COLORS)]
              for i, (label, _, _) in enumerate(headline.VARIANTS)}
    ncols = min(len(tables), 3)
    nrows = -(-len(tables) // ncols)
    height = min(HEADLINE_MAX_HEIGHT_IN, 1.9 + 3.6 * nrows)
    fig = Figure(figsize=(WIDTH_IN, height))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    width = 0.8 / len(headline.VARIANTS)
    for ax, table in zip(axes, tables):
        live = [r for r in table.rows if r.median is not None]
        div, unit = fmt.unit_for(max((r.high for r in live), default=1.0))
        for r in table.rows:
            vi = [label for label, _, _ in headline.VARIANTS].index(r.variant)
            x = headline.PATTERNS.index(r.pattern) + (vi + 0.5) * width - 0.4
            if r.median is None:
                ax.text(x, 0, "failed", rotation=90, ha="center", va="bottom", color="#b00020",
                        fontsize=8, fontweight="bold")
                continue
            m = r.median / div
            ax.bar(x, m, width * 0.92, color=colors[r.variant],
                   yerr=[[max(m - r.low / div, 0)], [max(r.high / div - m, 0)]], capsize=2,
                   error_kw={"elinewidth": 0.9})
            label = fmt.ns(r.median)
            if r.over_none is not None and r.variant != "none":
                label += "  %.2f×" % r.over_none
            ax.annotate(label, (x, r.high / div), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, rotation=90)
        ax.margins(y=0.35)
        ax.set_xlim(-0.5, len(headline.PATTERNS) - 0.5)
        ax.set_xticks(range(len(headline.PATTERNS)))
        ax.set_xticklabels(headline.PATTERNS, fontsize=8.5)
        ax.set_xlabel("token pattern", fontsize=8.5)
        ax.set_ylabel("time per call (%s)" % unit)
        ax.set_title(_wrap(table.title.replace(", 64 B, one client thread", ""), 45), fontsize=9.5)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    for ax in axes[len(tables):]:
        ax.set_visible(False)
    handles = [Patch(color=colors[label], label="cloaking: %s%s" % (
        label, " (kernel probe)" if label.startswith("dynamic") else ""))
        for label, _, _ in headline.VARIANTS]
    _legend_and_title(fig, handles, "Headline: cost per downstream call (64 B, one client thread)")
    bottom = _caption(fig, [result], "bars: median of the repetitions; whiskers: its 95% interval "
                      "(order statistics); label: median and × the same pattern without cloaking")
    fig.subplots_adjust(wspace=0.28, hspace=0.6)
    _finish(fig, 1.3, bottom + 0.6)
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
        panels.setdefault((m.info.auth, m.info.place), []).append(m)
    colors = {label: _VARIANT_COLORS[i % len(_VARIANT_COLORS)]
              for i, (label, _, _) in enumerate(headline.VARIANTS)}
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(WIDTH_IN, min(HEADLINE_MAX_HEIGHT_IN, 1.9 + 3.5 * nrows)))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    ns = [1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]
    for ax, ((auth, place), group) in zip(axes, panels.items()):
        top = max(m.predict(1) for m in group)
        div, unit = fmt.unit_for(top)
        for m in group:
            label = headline.variant_of(m.info)
            ax.plot(ns, [m.predict(n) / div for n in ns], color=colors[label], linewidth=1.3)
            got = [c for c in checks if c.model is m]
            if got:
                xs = [c.n for c in got]
                ys = [c.measured / div for c in got]
                err = [[max(0, c.measured - c.measured_interval[0]) / div for c in got],
                       [max(0, c.measured_interval[1] - c.measured) / div for c in got]]
                ax.errorbar(xs, ys, yerr=err, fmt="o", color=colors[label], markersize=4,
                            capsize=2)
        if every:
            ax.axvline(every, color="black", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8, 16, 32, 64, 128])
        ax.set_xticklabels(["1", "2", "4", "8", "16", "32", "64", "128"])
        ax.set_xlabel("one identity change every N calls")
        ax.set_ylabel("time per call (%s)" % unit)
        ax.set_ylim(bottom=0)
        ax.set_title(_wrap(costmodel.group_label(group[0].info), 45), fontsize=9.5)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles = [Patch(color=colors[label], label="cloaking: " + label)
               for label, _, _ in headline.VARIANTS]
    handles.append(matplotlib.lines.Line2D([], [], marker="o", color="black", linestyle="",
                                           markersize=4, label="measured every:N (95% interval)"))
    _legend_and_title(fig, handles, "Cost model: steady + (switch − steady) / N, against the "
                      "measured every:N cells", ncol=5)
    bottom = _caption(fig, [result], "lines: the model from the run's steady and switch cells; "
                      "points: the run's every:N cells" + (
                          "; dotted: N = %g (report --every)" % every if every else ""))
    fig.subplots_adjust(wspace=0.25, hspace=0.6)
    _finish(fig, 1.3, bottom + 0.6)
    return fig


def plot_generic(result, cells=None):
    """(a) for files without cloakbench cells: the median time of every benchmark (or of `cells`)."""
    if cells is None:
        cells = [c for c in result.cells.values() if c.samples and not c.failed]
    if not cells:
        return None
    fig = Figure(figsize=(11, 0.4 * len(cells) + 2.2))
    ax = fig.subplots()
    div, unit = fmt.unit_for(max(max(c.samples) for c in cells))
    ys = list(range(len(cells)))[::-1]
    for y, cell in zip(ys, cells):
        m = median(cell.samples) / div
        q1, q3 = (v / div for v in spread(cell.samples))
        ax.barh(y, m, 0.7, color=_VARIANT_COLORS[1], xerr=[[max(m - q1, 0)], [max(q3 - m, 0)]],
                capsize=2)
        ax.scatter([s / div for s in cell.samples], [y] * len(cell.samples), s=5, color="black",
                   alpha=0.55, zorder=3, linewidths=0)
    ax.set_yticks(ys)
    ax.set_yticklabels([c.name for c in cells], fontsize=8)
    ax.set_xlabel("time per iteration (%s)" % unit)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title("Time per iteration (cloakbench fields unknown: plain Google Benchmark file)",
                 fontsize=11)
    bottom = _caption(fig, [result], SPREAD_TEXT)
    fig.subplots_adjust(left=0.3)
    _finish(fig, 0.5, bottom + 0.55)
    return fig


ROW_IN = 0.2          # one bar of the decomposition
PANEL_EXTRA_IN = 0.85  # a panel's title and axis
MAX_PANEL_ROWS = 34


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


def _draw_decomposition_panel(ax, title, rows):
    div, unit = fmt.unit_for(max(max(d.measured, d.measured - d.remainder) for _, _, d in rows))
    ys = list(range(len(rows)))[::-1]
    for y, (_, cell, d) in zip(ys, rows):
        left = 0.0
        for comp in ("transport", "probe", "switch", "new_context", "service_ticket", "mic"):
            v = d.component(comp)
            if v:
                ax.barh(y, v / div, 0.7, left=left, color=COMPONENT_COLORS[comp])
                left += v / div
        if d.remainder >= 0:
            ax.barh(y, d.remainder / div, 0.7, left=left, color=COMPONENT_COLORS["remainder"])
        else:  # baselines add up to more than the cell: show the overlap, do not hide it
            ax.barh(y, d.remainder / div, 0.7, left=left, color="white", alpha=0.85,
                    edgecolor=COMPONENT_COLORS["remainder"], hatch="////", linewidth=0.8)
        ax.plot([d.measured / div], [y], marker="D", color="black", markersize=3.5)
    ax.set_yticks(ys)
    ax.set_yticklabels([label for label, _, _ in rows], fontsize=7)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("time per call (%s)" % unit, fontsize=8.5)
    ax.set_title(_wrap(title, 60), fontsize=8.5)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def plot_decomposition(result, headline_only=False):
    """(b) Where the time goes: each cell split into its same-run baselines, as pages of two
    columns that each fit one screen; headline_only: just the headline cells."""
    panels = _decomposition_panels(result, headline_only)
    if not panels:
        return []
    handles = [Patch(color=COMPONENT_COLORS[c], label=derive.COMPONENT_LABELS[c])
               for c in derive.COMPONENTS]
    handles.append(Patch(facecolor="white", edgecolor=COMPONENT_COLORS["remainder"], hatch="////",
                         label="negative remainder (baselines exceed the cell)"))
    handles.append(matplotlib.lines.Line2D([], [], marker="D", color="black", linestyle="",
                                           markersize=4, label="measured time per call (median)"))
    top, bottom_in, gap = 1.45, 1.0, 0.85
    pairs = [panels[i:i + 2] for i in range(0, len(panels), 2)]

    def pair_height(pair):
        return ROW_IN * max(len(rows) for _, rows in pair) + PANEL_EXTRA_IN
    pages = _pack(pairs, pair_height, MAX_HEIGHT_IN - top - bottom_in - 0.05, gap)
    figs = []
    for n, page in enumerate(pages):
        heights = [pair_height(p) for p in page]
        fig = Figure(figsize=(WIDTH_IN, top + bottom_in + sum(heights) + gap * (len(page) - 1)))
        # 3 in of row labels beside each of the two columns
        label_in, right_in = 3.0, 0.2
        axis_in = (WIDTH_IN - 2 * label_in - right_in) / 2
        grid = fig.add_gridspec(len(page), 2, height_ratios=heights,
                                hspace=gap / (sum(heights) / len(heights)),
                                wspace=label_in / axis_in, left=label_in / WIDTH_IN,
                                right=1 - right_in / WIDTH_IN)
        for r, pair in enumerate(page):
            for c, (title, rows) in enumerate(pair):
                _draw_decomposition_panel(fig.add_subplot(grid[r, c]), title, rows)
        _legend_and_title(fig, handles, ("Where the time goes: the headline cells decomposed into "
                                         "baselines of the same run" if headline_only else
                                         "Where the time goes: each cell decomposed into baselines "
                                         "of the same run") + _page_note(n, len(pages)))
        bottom = _caption(fig, [result], "probe = probes/call x baseline/probe; switch = switches/"
                          "call x baseline/switch; new context = contexts/call x one new context "
                          "(local: the raw round trip; kerberos: the AP exchange) (docs/reading.md)")
        _finish(fig, top, bottom + 0.45)
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
    return (0, headline.AUTH_ORDER.get(info.auth, 9), headline.PINNED.index(info.place),
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
    per_row = 0.13 * len(series) + 0.12
    top, bottom_in = 0.6, 0.35 + 0.12 * len(series) + 0.75
    per_page = max(1, int((MAX_HEIGHT_IN - top - bottom_in) / per_row))
    pages = [order[i:i + per_page] for i in range(0, len(order), per_page)]
    figs = []
    for n, page in enumerate(pages):
        fig = Figure(figsize=(12, top + bottom_in + per_row * len(page) + 0.2))
        ax = fig.subplots()
        height = 0.8 / len(series)
        ys = list(range(len(page)))[::-1]
        handles = []
        for si, (r, ratios) in enumerate(series):
            color = machine_color(si)
            for y, name in zip(ys, page):
                s = ratios.get(name)
                if s is None:
                    continue
                yy = y + 0.4 - height * (si + 0.5)
                m = median(s.samples)
                q1, q3 = spread(s.samples)
                ax.barh(yy, m, height * 0.9, color=color,
                        xerr=[[max(m - q1, 0)], [max(q3 - m, 0)]], capsize=1.5)
            handles.append(Patch(color=color, label="%s (commit %s)" % (r.machine_id, r.commit)))
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(ys)
        ax.set_yticklabels([ratio_label(nm) for nm in page], fontsize=7.5)
        ax.set_ylim(-0.6, len(page) - 0.4)
        ax.set_xlabel("cloaked cell ÷ the same cell without cloaking (×, measured in one run)")
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(handles=handles, loc="lower right", fontsize=8.5)
        ax.set_title("Same-run ratios across machines%s: what cloaking adds, independent of "
                     "machine speed%s" % (" (headline cells)" if headline_only else "",
                                          _page_note(n, len(pages))), fontsize=11)
        bottom = _caption(fig, [r for r, _ in series], "bars: median ratio over the repetitions; "
                          "whiskers: interquartile range")
        fig.subplots_adjust(left=0.42, right=0.98)
        _finish(fig, top, bottom + 0.6)
        figs.append(fig)
    return figs


def plot_thread_scaling(result):
    """(d) Time per call against the number of client threads, four panels a page."""
    series = {}
    for cell in result.cells.values():
        i = cell.info
        if i.is_cell and cell.samples and not cell.failed:
            key = (i.backend, i.transport, i.auth, i.prot, i.tickets, i.place, i.bytes, None)
            series.setdefault(key, {}).setdefault(i.short_label(), []).append(cell)
    panels = [(k, {label: sorted(cells, key=lambda c: c.info.threads)
                   for label, cells in v.items() if len({c.info.threads for c in cells}) > 1})
              for k, v in sorted(series.items(), key=lambda kv: str(kv[0]))]
    panels = [(k, v) for k, v in panels if v]
    if not panels:
        return []
    pages = [panels[i:i + 4] for i in range(0, len(panels), 4)]
    figs = []
    for n, page in enumerate(pages):
        rows = [page[i:i + 2] for i in range(0, len(page), 2)]
        fig, axes = _grid_page(rows, 3.5, 0.7, 1.0, hspace_in=0.8)
        for ax, (key, lines) in zip(axes, page):
            div, unit = fmt.unit_for(max(max(c.samples) for cells in lines.values() for c in cells))
            for k, (label, cells) in enumerate(sorted(lines.items())):
                xs = [c.info.threads for c in cells]
                ms = [median(c.samples) / div for c in cells]
                qs = [spread(c.samples) for c in cells]
                err = [[max(m - q[0] / div, 0) for m, q in zip(ms, qs)],
                       [max(q[1] / div - m, 0) for m, q in zip(ms, qs)]]
                ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, label=label, markersize=3,
                            linewidth=1, color=_VARIANT_COLORS[(k + 1) % len(_VARIANT_COLORS)])
            threads = sorted({c.info.threads for cells in lines.values() for c in cells})
            ax.set_xscale("log", base=2)
            ax.set_xticks(threads)
            ax.set_xticklabels([str(t) for t in threads])
            ax.set_xlabel("client threads")
            ax.set_ylabel("time per call (%s)" % unit)
            ax.set_ylim(bottom=0)
            ax.set_title(_wrap(group_title(key)), fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=5.5, title="cloaking | token pattern", title_fontsize=6, ncol=2)
        fig.suptitle("Scaling with client threads" + _page_note(n, len(pages)), fontsize=12.5,
                     y=1.0 - 0.1 / fig.get_figheight())
        bottom = _caption(fig, [result], "points: median of the repetitions; whiskers: "
                                         "interquartile range")
        _finish(fig, 0.7, bottom + 0.55)
        figs.append(fig)
    return figs


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
    colours and anti-aliased text on white), so a report.html with every figure stays small."""
    try:
        from PIL import Image  # python3-pil, which Debian's matplotlib depends on
    except ImportError:
        return
    with Image.open(path) as im:
        q = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
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
               "thread_scaling": "Scaling with client threads",
               "same_run_ratios": "Same-run ratios across machines",
               "latency": "Latency distributions of the headline (paired blocks)"}


# The headline variants of the blocks, each with one color in every figure that draws them.
BLOCK_VARIANT_COLORS = {"none": "#7f7f7f", "static": "#1f77b4", "dynamic": "#d62728",
                        "dynamic_lru": "#2ca02c"}
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
    ncols = 3
    nrows = (len(panels) + ncols - 1) // ncols
    height = min(HEADLINE_MAX_HEIGHT_IN, 1.1 + 2.6 * nrows)
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    xs = [1.0 / (1.0 - q) for q in _PERCENTILES]
    for i, b in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for v, color in BLOCK_VARIANT_COLORS.items():
            h = ((b["variants"].get(v) or {}).get("histogram") or {}).get("all")
            if not h or not h.get("count"):
                continue
            ys = [blk.percentile(h, q) / 1000.0 for q in _PERCENTILES]
            ax.plot(xs, ys, marker="o", markersize=3, color=color, label=BLOCK_VARIANT_LABELS[v])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs[::2] + [xs[-1]] if len(xs) % 2 == 0 else xs[::2])
        ax.set_xticklabels(["p%g" % (100 * q) for q in _PERCENTILES][::2], fontsize=9)
        ax.tick_params(axis="y", which="both", labelsize=9)
        plain = matplotlib.ticker.FuncFormatter(lambda y, _: "%g" % y)
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_ylabel("µs per call", fontsize=9)
        ax.set_title("%s, place:%s, %s" % (b.get("package"), b.get("place"), b.get("pattern")),
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    handles = [Patch(color=c, label=BLOCK_VARIANT_LABELS[v]) for v, c in BLOCK_VARIANT_COLORS.items()]
    _legend_and_title(fig, handles, "Latency per call: percentiles of every timed call in the paired "
                                    "blocks (launches merged)")
    bottom = _caption(fig, [result], "x: percentile (log of 1/(1 − q)); y: µs per call, log")
    _finish(fig, 0.9, bottom + 0.45)
    fig.subplots_adjust(hspace=0.55, wspace=0.25)
    return fig


def figures_for(result, every=None):
    """(section, kind, [pages]) for every plot one file supports, in report order: the headline
    figures first (section MAIN), the full matrix after (section APPENDIX). A kind with no cells
    has no pages."""
    def one(fig):
        return [fig] if fig is not None else []
    latency = (MAIN, "latency", one(plot_latency(result))) if result.blocks else None
    if not any(c.info.is_cell for c in result.cells.values()):
        return [latency] if latency else [(MAIN, "cost_per_call", plot_generic_pages(result))]
    return ([latency] if latency else []) + [(MAIN, "headline", one(plot_headline(result))),
            (MAIN, "cost_model", one(plot_cost_model(result, every))),
            (MAIN, "decomposition", plot_decomposition(result, headline_only=True)),
            (APPENDIX, "cost_per_call", plot_cost_per_call(result)),
            (APPENDIX, "decomposition_all", plot_decomposition(result)),
            (APPENDIX, "thread_scaling", plot_thread_scaling(result))]


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

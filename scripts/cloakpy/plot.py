"""Plots of result files as PNG and SVG: cost per call, where the time goes, same-run ratios
across machines, and scaling with client threads."""

import os
import re

import matplotlib
matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)
from matplotlib.patches import Patch  # noqa: E402

from . import derive, fmt, names  # noqa: E402
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

PLOT_KINDS = ("cost_per_call", "decomposition", "thread_scaling")
MACHINES_STEM = "machines.same_run_ratios"


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
    auth_order = {"local": 0, "kerberos": 1}
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


def plot_cost_per_call(result):
    """(a) Time per call for each cloaking x token pattern, a panel per transport/placement."""
    groups = _groups(result, threads=1)
    if not groups:
        groups = _groups(result, threads=None)
    if not groups:
        return None
    colors = _variant_colors(c.info for _, cells in groups for c in cells)
    most = max(len({c.info.variant_label() for c in cells}) for _, cells in groups)
    width = 0.8 / most
    fig = Figure(figsize=(12, 3.6 * len(groups) + 1.6))
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (key, cells) in zip(axes, groups):
        patterns = sorted({c.info.pattern for c in cells}, key=_pattern_key)
        variants = [label for label in colors if any(c.info.variant_label() == label for c in cells)]
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
                q1, q3 = (v / div for v in spread(cell.samples))
                ax.bar(x, m, width * 0.92, color=colors[label],
                       yerr=[[max(m - q1, 0)], [max(q3 - m, 0)]], capsize=2,
                       error_kw={"elinewidth": 0.9})
                ax.scatter([x] * len(cell.samples), [s / div for s in cell.samples], s=5,
                           color="black", alpha=0.55, zorder=3, linewidths=0)
                ax.annotate(fmt.ns(median(cell.samples)), (x, max(q3, m)), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", fontsize=7,
                            rotation=90 if rotate else 0)
        ax.margins(y=0.3 if rotate else 0.15)
        ax.set_xlim(-0.5, len(patterns) - 0.5)
        ax.set_xticks(range(len(patterns)))
        ax.set_xticklabels(["token pattern: %s" % p for p in patterns])
        ax.set_ylabel("time per call (%s)" % unit)
        ax.set_title(group_title(key), fontsize=10.5)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles = [Patch(color=c, label="cloaking: " + label) for label, c in colors.items()]
    fig.legend(handles=handles, loc="upper center", ncol=min(3, len(handles)), fontsize=9,
               bbox_to_anchor=(0.5, 1.0 - 0.45 / fig.get_figheight()))
    fig.suptitle("Cost per downstream call by cloaking and token pattern", fontsize=13,
                 y=1.0 - 0.1 / fig.get_figheight())
    bottom = _caption(fig, [result], SPREAD_TEXT)
    fig.subplots_adjust(hspace=0.45)
    _finish(fig, 1.25, bottom + 0.35)
    return fig


def plot_generic(result):
    """(a) for files without cloakbench cells: the median time of every benchmark."""
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


def plot_decomposition(result):
    """(b) Where the time goes: each cell split into its same-run baselines."""
    panels = []
    for key, cells in _groups(result, threads=1):
        rows = [(c, derive.decompose(result, c)) for c in cells]
        rows = [(c, d) for c, d in rows if d is not None]
        rows.sort(key=lambda cd: (_variant_key(cd[0].info), _pattern_key(cd[0].info.pattern)))
        if rows:
            panels.append((key, rows))
    if not panels:
        return None
    total_rows = sum(len(rows) for _, rows in panels)
    fig = Figure(figsize=(12, 0.34 * total_rows + 1.3 * len(panels) + 1.8))
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [len(r) + 1.5 for _, r in panels]})[:, 0]
    for ax, (key, rows) in zip(axes, panels):
        div, unit = fmt.unit_for(max(max(d.measured, d.measured - d.remainder) for _, d in rows))
        ys = list(range(len(rows)))[::-1]
        for y, (cell, d) in zip(ys, rows):
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
            ax.plot([d.measured / div], [y], marker="D", color="black", markersize=4)
        ax.set_yticks(ys)
        ax.set_yticklabels([c.info.short_label() for c, _ in rows], fontsize=8)
        ax.set_xlabel("time per call (%s)" % unit)
        ax.set_title(group_title(key), fontsize=10.5)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    handles = [Patch(color=COMPONENT_COLORS[c], label=derive.COMPONENT_LABELS[c])
               for c in derive.COMPONENTS]
    handles.append(Patch(facecolor="white", edgecolor=COMPONENT_COLORS["remainder"], hatch="////",
                         label="negative remainder (baselines exceed the cell)"))
    handles.append(matplotlib.lines.Line2D([], [], marker="D", color="black", linestyle="",
                                           markersize=4, label="measured time per call (median)"))
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=8.5,
               bbox_to_anchor=(0.5, 1.0 - 0.45 / fig.get_figheight()))
    fig.suptitle("Where the time goes: each cell decomposed into baselines of the same run",
                 fontsize=13, y=1.0 - 0.1 / fig.get_figheight())
    bottom = _caption(fig, [result], "probe = probes/call x baseline/probe; switch = switches/"
                      "call x baseline/switch; new context = contexts/call x raw round trip "
                      "(docs/reading.md)")
    fig.subplots_adjust(left=0.3, hspace=0.6)
    _finish(fig, 1.3, bottom + 0.45)
    return fig


def ratio_label(name):
    """A short label for a same-run ratio name."""
    base, _, over = name.partition(" ÷ ")
    i = names.parse_name(base)
    if not i.is_cell:
        return name
    where = "%s %s%s %dB" % (i.transport, "" if i.place == "na" else i.place + " ",
                            "t%d" % i.threads, i.bytes)
    return "%s | %s  ÷ %s" % (where, i.short_label(), over)


def plot_machines(results):
    """(c) The same-run ratios of several files (machines) side by side."""
    series = []
    for r in results:
        ratios = {n: s for n, s in derive.same_run_ratios(r).items()
                  if n.endswith(derive.RATIO_OVER_NONE) and s.samples
                  and names.parse_name(n[: -len(derive.RATIO_OVER_NONE)]).threads == 1}
        if ratios:
            series.append((r, ratios))
    if len(series) < 2:
        return None
    order = []
    for _, ratios in series:
        order += [n for n in ratios if n not in order]
    fig = Figure(figsize=(12, 0.16 * len(order) * len(series) + 0.2 * len(order) + 2.6))
    ax = fig.subplots()
    height = 0.8 / len(series)
    ys = list(range(len(order)))[::-1]
    handles = []
    for si, (r, ratios) in enumerate(series):
        color = _VARIANT_COLORS[(si + 1) % len(_VARIANT_COLORS)]
        for y, name in zip(ys, order):
            s = ratios.get(name)
            if s is None:
                continue
            yy = y + 0.4 - height * (si + 0.5)
            m = median(s.samples)
            q1, q3 = spread(s.samples)
            ax.barh(yy, m, height * 0.9, color=color, xerr=[[max(m - q1, 0)], [max(q3 - m, 0)]],
                    capsize=1.5)
        handles.append(Patch(color=color, label="%s (commit %s)" % (r.machine_id, r.commit)))
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([ratio_label(n) for n in order], fontsize=7.5)
    ax.set_xlabel("cloaked cell ÷ the same cell without cloaking (×, measured in one run)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(handles=handles, loc="lower right", fontsize=8.5)
    ax.set_title("Same-run ratios across machines: what cloaking adds, independent of machine "
                 "speed", fontsize=11.5)
    bottom = _caption(fig, [r for r, _ in series], "bars: median ratio over the repetitions; "
                      "whiskers: interquartile range")
    fig.subplots_adjust(left=0.42)
    _finish(fig, 0.5, bottom + 0.6)
    return fig


def plot_thread_scaling(result):
    """(d) Time per call against the number of client threads."""
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
        return None
    fig = Figure(figsize=(11, 4.2 * len(panels) + 1.4))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (key, lines) in zip(axes, panels):
        div, unit = fmt.unit_for(max(max(c.samples) for cells in lines.values() for c in cells))
        for n, (label, cells) in enumerate(sorted(lines.items())):
            xs = [c.info.threads for c in cells]
            ms = [median(c.samples) / div for c in cells]
            qs = [spread(c.samples) for c in cells]
            err = [[max(m - q[0] / div, 0) for m, q in zip(ms, qs)],
                   [max(q[1] / div - m, 0) for m, q in zip(ms, qs)]]
            ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, label=label,
                        color=_VARIANT_COLORS[(n + 1) % len(_VARIANT_COLORS)])
        threads = sorted({c.info.threads for cells in lines.values() for c in cells})
        ax.set_xscale("log", base=2)
        ax.set_xticks(threads)
        ax.set_xticklabels([str(t) for t in threads])
        ax.set_xlabel("client threads")
        ax.set_ylabel("time per call (%s)" % unit)
        ax.set_ylim(bottom=0)
        ax.set_title(group_title(key), fontsize=10.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8.5, title="cloaking | token pattern", title_fontsize=8.5)
    fig.suptitle("Scaling with client threads", fontsize=13, y=1.0 - 0.1 / fig.get_figheight())
    bottom = _caption(fig, [result], "points: median of the repetitions; whiskers: "
                                     "interquartile range")
    fig.subplots_adjust(hspace=0.45)
    _finish(fig, 0.7, bottom + 0.55)
    return fig


def save(fig, out_dir, stem):
    """Write fig as stem.png and stem.svg; return both paths."""
    paths = []
    for ext in ("png", "svg"):
        path = os.path.join(out_dir, "%s.%s" % (stem, ext))
        kwargs = {"dpi": 110} if ext == "png" else {"metadata": {"Date": None}}
        fig.savefig(path, format=ext, facecolor="white", **kwargs)
        paths.append(path)
    return paths


def file_stems(results):
    """A distinct file-name stem per result, from its file name."""
    stems, seen = [], {}
    for r in results:
        stem = os.path.splitext(os.path.basename(r.path))[0] or "result"
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        stems.append(stem if n == 0 else "%s-%d" % (stem, n + 1))
    return stems


def figures_for(result):
    """(kind, figure) for every plot one file supports."""
    if not any(c.info.is_cell for c in result.cells.values()):
        return [("cost_per_call", plot_generic(result))]
    return [("cost_per_call", plot_cost_per_call(result)),
            ("decomposition", plot_decomposition(result)),
            ("thread_scaling", plot_thread_scaling(result))]


def write_plots(results, out_dir):
    """Write every plot the files support into out_dir; return (paths written, notes on
    plots that could not be drawn)."""
    matplotlib.rcParams["svg.hashsalt"] = "cloakbench"  # stable SVG ids: plots diff cleanly
    written, notes = [], []
    for result, stem in zip(results, file_stems(results)):
        for kind, fig in figures_for(result):
            if fig is None:
                notes.append("%s: no cells for the %s plot" % (result.path, kind.replace("_", " ")))
                continue
            written += save(fig, out_dir, "%s.%s" % (stem, kind))
    if len(results) > 1:
        fig = plot_machines(results)
        if fig is None:
            notes.append("same-run ratios need at least two files with cloakbench matrix cells")
        else:
            written += save(fig, out_dir, MACHINES_STEM)
    return written, notes

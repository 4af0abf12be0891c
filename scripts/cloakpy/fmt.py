"""Formatting shared by compare, report and plots: units people read, Markdown tables."""

import math


def ns(value):
    """A time in ns as people read it: '2.05 ns', '350 ns', '3.15 µs', '40.3 µs', '1.20 ms'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    if value == 0:
        return "0"
    a = abs(value)
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if a >= scale:
            return "%s %s" % (_sig(value / scale), unit)
    return "%s ns" % _sig(value)


def _sig(v):
    a = abs(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    return "%.2f" % v


def unit_for(max_ns):
    """(divisor, unit label) for an axis whose largest value is max_ns."""
    if max_ns >= 1e6:
        return 1e6, "ms"
    if max_ns >= 1e4:
        return 1e3, "µs"
    return 1.0, "ns"


def percent(fraction, signed=True):
    if fraction is None or math.isnan(fraction):
        return "—"
    return ("%+.1f%%" if signed else "%.1f%%") % (fraction * 100.0)


def times(ratio):
    if ratio is None or math.isnan(ratio):
        return "—"
    return "%.3f×" % ratio


def _md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header, rows):
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bytes_(value):
    """A memory size as people read it: '512 B', '3.20 KiB', '1.50 MiB' (negative: RSS that fell)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    a = abs(value)
    for scale, unit in ((1 << 20, "MiB"), (1 << 10, "KiB")):
        if a >= scale:
            return "%s %s" % (_sig(value / scale), unit)
    return "%.0f B" % value

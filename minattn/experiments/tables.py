"""Reading result rows, and writing them as tables and prose: the helpers every experiment's
table, key numbers and report section share.

The same tables go to the terminal (plain text) and into report.md (Markdown). Values are
averaged over seeds (geometric means for quantities that span decades), so a table is
one line per d.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

# -- reading rows ---------------------------------------------------------------------------------


def pick(rows, **match) -> list[dict]:
    """The rows whose fields equal every value in match."""
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def average(rows, metric: str, geometric: bool = False, **match) -> float | None:
    """Mean of a metric over the matching rows (those where it is present), or None."""
    values = [r[metric] for r in pick(rows, **match) if r.get(metric) is not None]
    if not values:
        return None
    if geometric:
        positive = [v for v in values if v > 0]
        return math.exp(np.mean(np.log(positive))) if positive else 0.0
    return float(np.mean(values))


def largest(rows, metric, **match) -> float | None:
    """The largest value of a metric over the matching rows, or None."""
    values = [r[metric] for r in pick(rows, **match) if r.get(metric) is not None]
    return max(values) if values else None


# -- formatting -----------------------------------------------------------------------------------


def fmt(x, style: str = "g") -> str:
    """Numbers for tables: '-' for missing, percentages, or 3 significant digits."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if style == "%":  # two significant digits below 1%, so that a small share never reads 0%
        return f"{100 * x:.0f}%" if x == 0 or x >= 0.01 else f"{100 * x:.2g}%"
    if style == "x":
        return "inf" if math.isinf(x) else f"{x:.3g}x"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.1e}"


def format_table(headers: list[str], body: list[list[str]], markdown: bool) -> str:
    """Right-aligned columns for the terminal, or a Markdown table."""
    if markdown:
        def cells(row):  # a | inside a cell would end it: escape it
            return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

        lines = [cells(headers), "|" + "|".join("---:" for _ in headers) + "|"]
        lines += [cells(row) for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def pivot(rows, columns, markdown: bool, **match) -> str:
    """One line per d; columns are (header, metric, scaling, style, geometric)."""
    ds = sorted({r["d"] for r in pick(rows, **match)})
    body = []
    for d in ds:
        line = [str(d)]
        for _, metric, scaling, style, geometric in columns:
            line.append(fmt(average(rows, metric, geometric, d=d, scaling=scaling, **match),
                            style))
        body.append(line)
    return format_table(["d"] + [c[0] for c in columns], body, markdown)


def legend(text: str, markdown: bool) -> str:
    """The line under a table that says what its short headers mean."""
    return f"\n\n_{text}_" if markdown else "\n" + textwrap.fill(text, 96)


# -- the report's prose and key numbers -----------------------------------------------------------


def prose(text: str) -> str:
    """Join the lines of each paragraph (the source wraps them for reading)."""
    paragraphs = text.strip().split("\n\n")
    return "\n\n".join(p if p.startswith("    ") else " ".join(p.split()) for p in paragraphs)


class KeyNumbers(list):
    """(what, measured, expected, holds) rows: the claims of the issue that the rows can check.

    Every expectation is a theory value with a stated tolerance, or a condition, and
    ``holds`` says whether the measured value meets it: "yes", or "**no**" followed by what
    the rows say instead, so that the report never prints a contradicted claim as if it held.
    """

    def add(self, what: str, value, expected: str, holds: bool, *, style: str = "g",
            note: str = "") -> None:
        """Add a claim, its value formatted; a value the rows do not hold (None) is left out.
        ``note`` says, for a claim that does not hold, what the rows show instead."""
        if not isinstance(holds, (bool, np.bool_)):
            raise TypeError(f"holds must be True or False, not {holds!r}: the check of {what!r}")
        if value is None:
            return
        verdict = "yes" if holds else "**no**" + (f": {note}" if note else "")
        self.append((what, value if isinstance(value, str) else fmt(value, style), expected,
                     verdict))


def within(value, target, factor: float) -> bool:
    """value is within a factor of target (both positive): target / factor <= value <=
    target * factor."""
    return value is not None and target / factor <= value <= target * factor


# -- words chosen from the numbers ----------------------------------------------------------------


def times(a, b, same: float = 1.25) -> str:
    """How a compares with b, in words: "3.2 times larger than", "35 times smaller than", or
    "about as large as" when they are within a factor ``same`` of each other."""
    if a is None or b is None or b == 0:
        return "not comparable with"
    ratio = a / b
    if 1 / same <= ratio <= same:
        return "about as large as"
    if ratio > 1:
        return f"{fmt(ratio)} times larger than"
    return f"{fmt(1 / ratio)} times smaller than" if ratio > 0 else "zero, unlike"


def above(a, b, words=("above", "below", "at")) -> str:
    """"above", "below" or "at": where a is against b."""
    return words[0] if a > b else words[1] if a < b else words[2]


def span(values, style: str = "g") -> str:
    """"x" when the values round to the same number, else "x to y" (smallest to largest)."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    low, high = fmt(min(values), style), fmt(max(values), style)
    return low if low == high else f"{low} to {high}"


def slope(xs, ys) -> float | None:
    """The least-squares slope of log(ys) against log(xs) (None with fewer than 2 points)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pairs) < 2:
        return None
    lx, ly = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(lx, ly, 1)[0])


def listing(words) -> str:
    """"a", "a and b", "a, b and c"."""
    words = [str(w) for w in words]
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]

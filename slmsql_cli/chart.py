"""Charts of a result, drawn from its rows alone: no model, so a chart never slows an answer.

`chart_spec` decides once, for every surface, whether a result can be charted and how: one label
column (text or dates; with only numbers, the first column) and one or more numeric columns, at
most MAX_ROWS rows. Labels that are all dates (YYYY, YYYY-MM, YYYY-MM-DD…) or numbers in rising
order make a line chart, anything else a bar chart. The web page draws the spec with SVG
(`serve/static/app.js`); `ask --chart` draws horizontal bars in the terminal (`terminal_bars`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from slmsql_cli.targets.result import ExecResult

MAX_ROWS = 300  # more bars than this are no longer read one by one: the table is better
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?)?$")


@dataclass
class ChartSpec:
    kind: str  # "bar" or "line"
    label: int  # index of the label column
    values: list[int]  # indices of the numeric columns, in result order

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "values": self.values}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def chart_spec(result: ExecResult | None) -> ChartSpec | None:
    """How to chart `result`, or None when it has no chartable shape."""
    if result is None or not result.ok or len(result.columns) < 2 or not 1 <= len(result.rows) <= MAX_ROWS:
        return None
    columns = list(zip(*result.rows))
    numeric = [
        i
        for i, column in enumerate(columns)
        if any(v is not None for v in column) and all(v is None or _is_number(v) for v in column)
    ]
    others = [i for i in range(len(columns)) if i not in numeric]
    if len(others) > 1 or not numeric:
        return None
    label = others[0] if others else numeric[0]
    values = [i for i in numeric if i != label]
    if not values:
        return None
    labels = columns[label]
    dated = all(isinstance(v, str) and _DATE.match(v) for v in labels)
    rising = all(_is_number(v) for v in labels) and all(a < b for a, b in zip(labels, labels[1:]))
    return ChartSpec("line" if (dated or rising) and len(labels) > 1 else "bar", label, values)


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def terminal_bars(result: ExecResult, spec: ChartSpec, width: int = 80) -> list[str]:
    """Horizontal bars, one line per row (a block per numeric column), each line at most `width`
    characters: the label (cut with … past a third of the width), the bar, the value. A negative
    value is drawn with ░ instead of █; NULL has no bar."""
    labels = ["NULL" if row[spec.label] is None else str(row[spec.label]) for row in result.rows]
    label_width = min(max(len(s) for s in labels), max(width // 3, 6))
    lines: list[str] = []
    for column in spec.values:
        values = [row[column] for row in result.rows]
        texts = ["NULL" if v is None else _number(v) for v in values]
        value_width = max(len(t) for t in texts)
        room = max(width - label_width - value_width - 3, 1)  # two spaces and one before the value
        biggest = max((abs(v) for v in values if v is not None), default=0) or 1
        if len(spec.values) > 1:
            lines.append(str(result.columns[column])[:width])
        for label, value, text in zip(labels, values, texts):
            shown = label if len(label) <= label_width else label[: label_width - 1] + "…"
            bar = ""
            if value is not None:
                cells = round(abs(value) / biggest * room)
                bar = ("░" if value < 0 else "█") * cells
            lines.append(f"{shown:<{label_width}}  {bar:<{room}} {text:>{value_width}}".rstrip())
    return lines

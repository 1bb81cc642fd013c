"""The server-drawn bar charts: axis scale, one bar per label (zero ones too), stacking,
and labels that cannot inject markup."""

from __future__ import annotations

import re

import pytest

from api.web.charts import bar_chart, nice_ceiling


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 1.0), (0.0042, 0.005), (1, 1), (1.2, 2), (2100, 2500), (7, 10), (10, 10)],
)
def test_the_axis_top_is_a_round_number_at_or_above_the_highest_bar(
    value: float, top: float
) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def heights(svg: str, series: str) -> list[float]:
    return [float(h) for h in re.findall(rf'height="([\d.]+)" data-series="{series}"', svg)]


def test_every_label_gets_a_bar_and_stacks_are_in_proportion() -> None:
    svg = str(
        bar_chart(
            [("d1", (100, 100)), ("d2", (0, 0)), ("d3", (400, 100))],
            series=("input", "output"),
            title="Tokens",
            value_text=str,
        )
    )
    labels = re.findall(r'<g class="bar" data-label="([^"]+)" data-value="([^"]+)">', svg)
    assert labels == [("d1", "200"), ("d2", "0"), ("d3", "500")]
    inputs, outputs = heights(svg, "input"), heights(svg, "output")
    assert inputs[1] == outputs[1] == 0
    assert inputs[2] == pytest.approx(4 * inputs[0]) and outputs[2] == pytest.approx(outputs[0])
    assert "<title>d3: 400 input, 100 output</title>" in svg


def test_labels_and_titles_are_escaped() -> None:
    svg = str(bar_chart([("<b>", (1.0,))], series=("x",), title='"t"&', value_text=str))
    assert "<b>" not in svg and "&lt;b&gt;" in svg and 'aria-label="&#34;t&#34;&amp;"' in svg

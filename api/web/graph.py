"""A workflow's step graph as an inline SVG, laid out on the server.

Steps go in columns by layer, the longest path from a root (a step with no
dependencies), so every arrow points right; within a column, steps keep their
order in the document. No JavaScript and no library: the page works as it loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from graphlib import TopologicalSorter

from markupsafe import Markup, escape

BOX_WIDTH, BOX_HEIGHT = 170, 48
GAP_X, GAP_Y, MARGIN = 60, 18, 10
MAX_LABEL_CHARS = 24


@dataclass(frozen=True)
class Node:
    id: str
    agent: str
    depends_on: tuple[str, ...]


def nodes_of(steps: Iterable[Mapping[str, object]]) -> list[Node]:
    """Nodes from workflow steps or run steps (both have id, agent, depends_on)."""
    result = []
    for step in steps:
        raw = step.get("depends_on")
        deps = tuple(dict.fromkeys(str(d) for d in raw)) if isinstance(raw, list) else ()
        result.append(Node(id=str(step["id"]), agent=str(step["agent"]), depends_on=deps))
    return result


def layers(nodes: list[Node]) -> dict[str, int]:
    """Each step's layer: 0 for a root, else one more than its deepest dependency.
    Dependencies that name no step are ignored; a cycle raises graphlib.CycleError."""
    known = {node.id for node in nodes}
    deps = {node.id: [d for d in node.depends_on if d in known] for node in nodes}
    layer: dict[str, int] = {}
    for step_id in TopologicalSorter(deps).static_order():
        layer[step_id] = max((layer[d] + 1 for d in deps[step_id]), default=0)
    return layer


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def render_svg(nodes: list[Node], statuses: Mapping[str, str] | None = None) -> Markup:
    """The graph as an <svg>: one `g.node[data-step]` per step (classed with its status,
    when given) and one `path.edge[data-from][data-to]` per dependency."""
    layer = layers(nodes)
    columns: dict[int, list[Node]] = {}
    for node in nodes:
        columns.setdefault(layer[node.id], []).append(node)
    tallest = max((len(column) for column in columns.values()), default=0)
    height = 2 * MARGIN + tallest * BOX_HEIGHT + max(tallest - 1, 0) * GAP_Y
    width = 2 * MARGIN + len(columns) * BOX_WIDTH + max(len(columns) - 1, 0) * GAP_X

    position: dict[str, tuple[int, int]] = {}
    for index, column in columns.items():
        column_height = len(column) * BOX_HEIGHT + (len(column) - 1) * GAP_Y
        top = MARGIN + (height - 2 * MARGIN - column_height) // 2
        for row, node in enumerate(column):
            position[node.id] = (
                MARGIN + index * (BOX_WIDTH + GAP_X),
                top + row * (BOX_HEIGHT + GAP_Y),
            )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" data-testid="workflow-graph" '
        f'aria-label="Step graph: {len(nodes)} steps">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#667085"/></marker></defs>',
    ]
    for node in nodes:
        x2, y2 = position[node.id]
        for dep in node.depends_on:
            if dep not in position:
                continue
            x1, y1 = position[dep]
            start = (x1 + BOX_WIDTH, y1 + BOX_HEIGHT // 2)
            end = (x2, y2 + BOX_HEIGHT // 2)
            bend = (end[0] - start[0]) // 2
            parts.append(
                f'<path class="edge" data-from="{escape(dep)}" data-to="{escape(node.id)}" '
                f'd="M{start[0]},{start[1]} C{start[0] + bend},{start[1]} '
                f'{end[0] - bend},{end[1]} {end[0]},{end[1]}" fill="none" stroke="#667085" '
                f'stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    for node in nodes:
        x, y = position[node.id]
        status = (statuses or {}).get(node.id)
        classes = f"node {status}" if status else "node"
        parts.append(
            f'<g class="{escape(classes)}" data-step="{escape(node.id)}">'
            f"<title>{escape(node.id)} (agent {escape(node.agent)})</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" '
            f'fill="#fff" stroke="#98a2b3"/>'
            f'<text x="{x + 10}" y="{y + 20}" font-weight="600">{escape(_label(node.id))}</text>'
            f'<text x="{x + 10}" y="{y + 38}" fill="#5d6676">{escape(_label(node.agent))}</text>'
            "</g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))

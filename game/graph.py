"""The slides as a graph: the story editor's picture of a story file, choices and continuations as edges, laid out
in columns by distance from the start; and the breadth-first walk that `Story.walk` and the layout share.

It reads the story document as it is, broken or not (a missing target, a `from` naming no slide), so the editor
can show a story that does not load yet.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from game import state as st
from game.yamlsafe import cut


@dataclass(frozen=True)
class GraphNode:
    id: str
    x: float
    y: float
    start: bool = False
    ending: bool = False
    unreachable: bool = False
    missing: bool = False  # a choice points here, but there is no such slide
    source_only: bool = False  # no choice leads here, but a reachable slide's picture is painted from its picture


CHOICE, CONTINUATION = "choice", "continuation"  # the two kinds of edge in the story graph


@dataclass(frozen=True)
class GraphEdge:
    """A choice (``source`` leads to ``target``), or a continuation (``target``'s picture is painted from
    ``source``'s: from the source to the continuation, as the picture flows)."""

    source: str
    target: str
    broken: bool = False
    label: str = ""  # the choice's text; for a continuation, "continues the picture of ..."
    condition: str | None = None  # its `if:`, when it has one
    otherwise: str = st.HIDE  # what a player sees while it is closed
    effects: str = ""  # its `set:`, as "name = value, ..."
    kind: str = CHOICE
    strength: str = ""  # a continuation's `strength:` as written ("" for the default)
    path: str = ""  # a continuation: its curve (SVG path data), apart from the straight choice edges


def breadth_first(start: str, targets: Callable[[str], Iterable[str]]) -> dict[str, tuple[str | None, int]]:
    """Walk a graph breadth-first from ``start``: each node reached, with the node it was first reached from (None
    for the start) and its distance from the start.  ``targets(node)`` lists where a node leads."""
    reached: dict[str, tuple[str | None, int]] = {start: (None, 0)}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for target in targets(current):
            if target not in reached:
                reached[target] = (current, reached[current][1] + 1)
                queue.append(target)
    return reached


def graph_links(slides: dict) -> tuple[dict[str, list[str]], list[tuple[str, dict]], dict[str, tuple[str, str]]]:
    """What a (possibly broken) ``slides`` mapping links: where each slide's choices lead, every choice with a ``to``
    as (its slide, the choice), and each continuation as slide -> (the slide its picture continues, the strength as
    written, shortened)."""
    targets: dict[str, list[str]] = {}
    found: list[tuple[str, dict]] = []
    continues: dict[str, tuple[str, str]] = {}
    for sid, body in slides.items():
        choices = body.get("choices") if isinstance(body, dict) else None
        choices = [c for c in choices if isinstance(c, dict) and c.get("to")] if isinstance(choices, list) else []
        targets[str(sid)] = [str(c.get("to")) for c in choices]
        found += [(str(sid), c) for c in choices]
        image = body.get("image") if isinstance(body, dict) else None
        if isinstance(image, dict) and isinstance(image.get("from"), str) and image["from"]:
            strength = image.get("strength")
            continues[str(sid)] = (image["from"], "" if strength is None else cut(str(strength), 12))
    return targets, found, continues


def source_columns(depth: dict[str, int], targets: dict[str, list[str]],
                   continues: dict[str, tuple[str, str]]) -> dict[str, int]:
    """The column of each picture source that no choice reaches (not in ``depth``): one before the first slide
    painted from it, following chains of continuations."""
    columns: dict[str, int] = {}
    for sid in sorted(depth, key=lambda s: depth[s]):
        current, seen = sid, {sid}
        while current in continues and continues[current][0] in targets and continues[current][0] not in seen:
            source = continues[current][0]
            if source not in depth:
                columns.setdefault(source, max(0, depth.get(current, columns.get(current, 1)) - 1))
            current = source
            seen.add(current)
    return columns


def choice_edge(source: str, choice: dict, targets: dict[str, list[str]]) -> GraphEdge:
    """The edge of one choice of slide ``source``, its text, condition and effects shortened for the graph."""
    target = str(choice["to"])
    return GraphEdge(source, target, target not in targets, cut(str(choice.get("text") or ""), 80),
                     cut(shown_condition(choice.get("if")), 120) if choice.get("if") not in (None, "") else None,
                     st.DISABLE if choice.get("otherwise") == st.DISABLE else st.HIDE,
                     cut(shown_effects(choice.get("set")), 120))


def story_graph(document: Any) -> tuple[list[GraphNode], list[GraphEdge]]:
    """Slides as nodes laid out in columns by distance from the start, choices and continuations as edges; works on
    broken stories.  A slide that no choice reaches but whose picture a reachable slide's continues (a picture
    source only) stands in the column before that slide; other unreachable slides and missing ones in a last
    column."""
    slides = document.get("slides") if isinstance(document, dict) else None
    if not isinstance(slides, dict):
        return [], []
    targets, found, continues = graph_links(slides)
    start = str(document.get("start", ""))
    depth = {sid: d for sid, (_, d) in breadth_first(start, lambda sid: targets.get(sid, [])).items()
             } if start in targets else {}
    last = max(depth.values(), default=0) + 1
    source_column = source_columns(depth, targets, continues)
    rows: dict[int, int] = {}
    nodes = []
    for sid in list(targets) + sorted({t for ts in targets.values() for t in ts if t not in targets}):
        column = depth.get(sid, source_column.get(sid, last))
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes.append(GraphNode(sid, 90 + 170 * column, 40 + 60 * row, sid == start,
                               sid in targets and not targets[sid], sid not in depth, sid not in targets,
                               sid in source_column))
    edges = [choice_edge(s, c, targets) for s, c in found]
    # A `from` naming no slide, or the slide itself, is an error the check lists: no edge to draw for it.
    placed = {n.id: n for n in nodes}
    edges += [GraphEdge(source, sid, False, cut(f"continues the picture of {source}", 100), kind=CONTINUATION,
                        strength=strength, path=continuation_path(placed[source], placed[sid]))
              for sid, (source, strength) in continues.items() if source in targets and source != sid]
    return nodes, edges


def continuation_path(a: GraphNode, b: GraphNode) -> str:
    """The SVG path of a continuation edge from ``a`` (the source) to ``b``: a curve that sags a little below the
    straight line a choice between the same slides takes, so that both show; between slides in one column it bows
    out to the right.  It stays within the graph's margins."""
    if a.x == b.x:
        bow = min(45.0, 30 + abs(b.y - a.y) / 8)
        return f"M {a.x + 60} {a.y + 6} C {a.x + 60 + bow} {a.y + 6}, {b.x + 60 + bow} {b.y - 6}, {b.x + 60} {b.y - 6}"
    side = 60 if b.x > a.x else -60
    x1, y1, x2, y2 = a.x + side, a.y + 8, b.x - side, b.y + 8
    third = (x2 - x1) / 3
    return f"M {x1} {y1} C {x1 + third:g} {y1 + 24}, {x2 - third:g} {y2 + 24}, {x2} {y2}"


def shown_condition(condition: Any) -> str:
    """A choice's ``if:`` as the editor shows it."""
    return st.literal(condition) if isinstance(condition, bool) else str(condition)


def shown_effects(effects: Any) -> str:
    """A choice's ``set:`` as the editor shows it: ``name = value, ...``."""
    if not isinstance(effects, dict):
        return ""
    return ", ".join(f"{k} = {st.literal(v) if isinstance(v, bool) else v}" for k, v in itertools.islice(
        effects.items(), 8))

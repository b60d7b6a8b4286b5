"""What a story file may cost: YAML parsed within bounds, and values quoted short in messages.

A story file is data from anyone (an upload, a file dropped in the stories folder): a hostile one must cost little
and stay one broken story in the list.  This module bounds its size (the upload cap), how deep it nests (a story
needs about 6 levels), how far its aliases (``*name``) may expand it, how many values it holds, and how much of any
value a message repeats.  It knows nothing of stories: `parse` returns the round-trip document or raises
`YamlProblem` with a message and a line; `game.story.load_story` names the file.  (One parse per file at a time is
the stories folder's rule: `game.library.StoryLibrary`.)
"""

from __future__ import annotations

import itertools
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.composer import ComposerError
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode
from ruamel.yaml.nodes import ScalarNode

MAX_STORY_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_EXPANSION = 2 * MAX_STORY_BYTES  # characters of the file once every alias is written out
MAX_VALUES = 20_000  # keys, values and items (about 1,500 slides); each costs ruamel ~0.1 ms to parse
MAX_MESSAGE = 300  # characters of one problem's message


class YamlProblem(ValueError):
    """A text that is not YAML, or YAML too costly to load; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


def shown(value: Any, depth: int = 0) -> str:
    """A value as an error message quotes it, at most about 80 characters: never the whole of a large or nested
    value (a hostile file's value may expand to megabytes; only its first few items are looked at)."""
    if isinstance(value, str):
        text = repr(value[:60]) + ("…" if len(value) > 60 else "")
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int):
        text = repr(value) if -10**30 < value < 10**30 else "a number of more than 30 digits"
    elif isinstance(value, (dict, list, tuple)):
        if depth >= 2:
            return "{…}" if isinstance(value, dict) else "[…]"
        items = list(itertools.islice(value.items() if isinstance(value, dict) else value, 4))
        parts = [f"{shown(k, depth + 1)}: {shown(v, depth + 1)}" if isinstance(value, dict) else shown(k, depth + 1)
                 for k, v in (items if isinstance(value, dict) else [(i, None) for i in items])]
        inner = ", ".join(parts[:3]) + (", …" if len(value) > 3 else "")
        text = "{" + inner + "}" if isinstance(value, dict) else "[" + inner + "]"
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:79] + "…"


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text``, at most ``limit`` characters (the last one an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Refused(ComposerError):
    """The file is valid YAML, but too costly to load (see `BoundedComposer`)."""


class BoundedComposer(Composer):
    """ruamel's composer, refusing what would make a small file expensive to load, check or show.

    Nodes are composed once even when aliases repeat them (``*name`` is a reference), but whatever walks or prints
    the loaded document pays for every repetition: a 400-byte file of nested aliases expands to gigabytes.  Each
    node's expanded size (characters of its scalars, aliases counted in full) is known when it is complete, so the
    load stops at the first node past MAX_EXPANSION.  An alias inside the value it names (a loop) is refused; depth
    is capped by ruamel's own ``max_depth``, before Python's recursion limit is anywhere near.
    """

    def __init__(self, loader: Any = None):
        super().__init__(loader)
        self.sizes: dict[int, int] = {}  # id(node) -> expanded size, for every completed node

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self.sizes:
                raise _Refused(None, None, f"the alias *{cut(str(event.anchor), 40)} is used inside the "
                                    "value it names (a loop)", event.start_mark)
            return super().compose_node(parent, index)
        node = super().compose_node(parent, index)
        if isinstance(node, ScalarNode):
            size = len(node.value) + 1
        elif isinstance(node, MappingNode):
            size = 1 + sum(self.sizes[id(k)] + self.sizes[id(v)] for k, v in node.value)
        else:
            size = 1 + sum(self.sizes[id(item)] for item in node.value)
        if size > MAX_EXPANSION:
            raise _Refused(None, None, f"its aliases (*name) expand it to more than {MAX_EXPANSION:,} "
                                "characters; write the values out or share fewer", node.start_mark)
        self.sizes[id(node)] = size
        if len(self.sizes) > MAX_VALUES:
            raise _Refused(None, None, f"it holds more than {MAX_VALUES:,} values (keys, texts and list items); "
                           "split it into several stories", node.start_mark)
        return node


def yaml_parser() -> YAML:
    """A round-trip YAML parser/dumper that keeps comments and key order, bounded as `BoundedComposer` says."""
    yaml = YAML(typ="rt")
    yaml.Composer = BoundedComposer
    yaml.max_depth = MAX_DEPTH
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the author's long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def parse(text: str) -> Any:
    """The round-trip document of a story file's text; raise `YamlProblem` when it is too large, not YAML, or
    too costly to load (each message short, naming the line where one is known)."""
    size = len(text.encode("utf-8"))
    if size > MAX_STORY_BYTES:
        raise YamlProblem(f"is {size:,} bytes; a story file may be at most {MAX_STORY_BYTES:,} bytes")
    try:
        return yaml_parser().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        message = str(getattr(exc, "problem", None) or exc).strip()
        prefix = "not valid YAML: "
        if isinstance(exc, MaxDepthExceededError):
            prefix, message = "", f"nested more than {MAX_DEPTH} levels deep (a story needs about 6)"
        elif isinstance(exc, _Refused):
            prefix = ""
        elif "duplicate key" in str(exc):
            key = str(exc).split("found duplicate key")[-1].split("with value")[0].strip()
            message = f"duplicate key {cut(key, 80)}: each slide id, and each field of a slide, may appear only once"
        raise YamlProblem(f"{prefix}{cut(message)}", line) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value ruamel cannot build, e.g. a 5,000-digit number
        message = "a number has too many digits" if "integer string conversion" in str(exc) else str(exc)
        raise YamlProblem(f"not valid YAML: {cut(message)}") from None

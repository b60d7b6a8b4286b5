"""Harlowe passages as trees: its macros ``(name: args)[hook]``, variables, named and collapsing hooks."""

from __future__ import annotations

import re
from typing import Any

from game.twine.expressions import past
from game.twine.expressions import sets
from game.twine.expressions import split_top
from game.twine.expressions import string_value
from game.twine.expressions import translate
from game.twine.nodes import Context
from game.twine.nodes import Link
from game.twine.nodes import Print
from game.twine.nodes import collapse
from game.twine.nodes import effects_of
from game.twine.nodes import flatten
from game.twine.nodes import group_ifs
from game.twine.nodes import our_name
from game.twine.passages import Scanner
from game.twine.passages import goto
from game.twine.passages import include
from game.twine.passages import printed

# Harlowe's macro names (lower case, without - and _), so that "(Note: ...)" in prose is not taken for one.
MACROS = set("""
    a array dm datamap ds dataset set put move if unless elseif else for loop link linkgoto linkreveal linkrepeat
    linkrevealgoto linkrerun linkundo linkfullscreen linkshow linkstorylet click clickgoto clickreplace clickappend
    clickprepend clickrerun clickundo mouseover mouseout mouseovergoto mouseoutgoto goto undo redirect display print
    verbatimprint either random cond nth num number str string text textcolour textcolor colour color textstyle font
    align background transition t8n transitiontime t8ntime transitiondelay t8ndelay transitionskip hook replace
    append prepend show hide rerun live event after stop alert prompt confirm history visited passage passages
    savegame loadgame savedgames restart reload cyclinglink seqlink dropdown inputbox forceinputbox checkbox meter
    enchant enchantin change newline css hidden hoverstyle box floatbox charstyle linestyle textsize size textindent
    textrotate textrotatez opacity collapse nobr verbatim v6m debug icon icons storylet openstorylets sequencelink
    source datanames datavalues dataentries range count sorted rotated shuffled interlaced repeated reversed folded
    altered find all some none lowercase uppercase lowerfirst upperfirst words trimmed joined substring digitformat
    round floor ceil abs min max sqrt sin cos tan pow exp log log10 log2 sign bind 2bind bind2 mock metadata
    partialuserinput unpack""".split())
STYLING = {"textstyle", "textcolour", "textcolor", "colour", "color", "font", "align", "background", "transition",
           "t8n", "css", "textsize", "size", "opacity", "hoverstyle", "charstyle", "linestyle", "box", "floatbox",
           "textindent", "textrotate", "textrotatez", "transitiontime", "t8ntime", "transitiondelay", "t8ndelay"}
GOTO_LINKS = ("linkgoto", "clickgoto", "linkrevealgoto", "mouseovergoto")
HOOK_LINKS = ("link", "linkreveal", "linkrepeat", "click", "linkrerun", "linkshow")


def parse(text: str, ctx: Context) -> list[Any]:
    """A Harlowe passage's text as a tree."""
    scan = Scanner(text)
    while scan.more():
        if not (scan.link(ctx) or _macro(scan, ctx) or _variable(scan, ctx) or _hook_name(scan, ctx)
                or _collapsing(scan, ctx)):
            if text[scan.i] in "[]":  # a bare hook's brackets
                scan.i += 1
            else:
                scan.keep()
    return group_ifs(scan.finish())


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _macro(scan: Scanner, ctx: Context) -> bool:
    """A ``(name: args)`` macro here, with the ``[hook]`` that follows it."""
    text, i = scan.text, scan.i
    macro = re.match(r"\(([A-Za-z][\w-]*):", text[i:i + 40])
    if not macro or _key(macro.group(1)) not in MACROS:
        return False
    end = past(text, i, "()", quoted=True)
    if end == -1:
        return False
    args = text[i + macro.end():end - 1]
    hook = None
    if end < len(text) and text[end] == "[":
        hook_end = past(text, end, "[]")
        if hook_end != -1:
            hook, end = text[end + 1:hook_end - 1], hook_end
    scan.emit(_macro_nodes(_key(macro.group(1)), args, hook, ctx), end)
    return True


def _variable(scan: Scanner, ctx: Context) -> bool:
    """A ``$variable`` (or ``_temporary``) the story sets, printed here."""
    text, i = scan.text, scan.i
    var = re.match(r"\$([A-Za-z_]\w*)|_([A-Za-z]\w*)", text[i:])
    if var and (var.group(1) in ctx.known or var.group(2) in ctx.temps) and (i == 0 or not text[i - 1].isalnum()):
        scan.emit([Print(our_name(var.group(1) or var.group(2)))], i + var.end())
        return True
    return False


def _hook_name(scan: Scanner, ctx: Context) -> bool:
    """A hook's name (``|name>``, ``<name|``, ``?name``): the name goes, the hook's text stays."""
    text, i = scan.text, scan.i
    named = re.match(r"\|[\w-]+[>)](?=\[)|\]<[\w-]+\||\?[A-Za-z][\w-]*", text[i:])
    if named and (text[i] != "?" or i == 0 or not text[i - 1].isalnum()):
        if named.group().endswith(")"):
            ctx.warn("a hidden hook is shown at once")
        scan.emit([], i + named.end())
        return True
    return False


def _collapsing(scan: Scanner, ctx: Context) -> bool:
    """``{...}``: its white space runs collapse to single spaces."""
    text, i = scan.text, scan.i
    if text[i] == "{" and (end := past(text, i, "{}")) != -1:
        scan.emit(collapse(parse(text[i + 1:end - 1], ctx)), end)
        return True
    return False


def _macro_nodes(name: str, args: str, hook: str | None, ctx: Context) -> list[Any]:
    """A macro (and its hook's tree) as nodes."""
    is_link = name.startswith(("link", "click"))
    ctx.in_link += is_link
    try:
        body = parse(hook, ctx) if hook is not None else []
    finally:
        ctx.in_link -= is_link
    strings = [string_value(a) for a in split_top(args)]
    if name in ("set", "put"):
        return sets(args, ctx, f"({name}:)") + body
    if name in ("if", "unless", "elseif", "else"):
        return _condition(name, args, body, ctx)
    if name in GOTO_LINKS:
        return _link_goto(name, strings, body, ctx)
    if name in HOOK_LINKS:
        return _hook_link(name, args, strings, body, ctx)
    if name in ("goto", "redirect"):
        return goto(strings[0] if strings else None, ctx)
    if name == "display":
        return include(strings[0] if strings else None, ctx)
    if name in ("print", "verbatimprint"):
        return printed(args, ctx, f"(print: {args.strip()[:60]})")
    if name in ("nobr", "collapse"):
        return collapse(body)
    if name in STYLING:
        return body  # styling: the words stay
    ctx.warn(f"({name}:) cannot be mapped; dropped" + (" (its hook's text is kept)" if hook and hook.strip() else ""))
    return body


def _condition(name: str, args: str, body: list[Any], ctx: Context) -> list[Any]:
    """(if:), (unless:), (else-if:), (else:) as a marker that `group_ifs` joins with its neighbours."""
    condition = None
    if name != "else":
        condition = translate(args, ctx)
        if condition is None:
            ctx.warn(f"the condition ({name}: {args.strip()[:60]}) cannot be kept; its text is always shown")
            return body
        condition = f"not ({condition})" if name == "unless" else condition
    return [("if?", "elif" if name == "elseif" else ("else" if name == "else" else "if"), condition, body)]


def _link_goto(name: str, strings: list[str | None], body: list[Any], ctx: Context) -> list[Any]:
    """(link-goto: label, target), (click-goto: hook, target) and the like, with the hook's sets as effects."""
    if not strings:
        return goto(None, ctx)
    label: str | None
    target: str | None
    if name in ("clickgoto", "mouseovergoto"):
        label, target = (strings[0] or "Continue"), strings[-1] if len(strings) > 1 else None
    else:
        label, target = strings[0], (strings[1] if len(strings) > 1 else strings[0])
    if label is None or target is None:
        return goto(None, ctx)
    return [Link(label, target, effects_of(body))]


def _hook_link(name: str, args: str, strings: list[str | None], body: list[Any], ctx: Context) -> list[Any]:
    """(link: label)[... (goto: target)]: a choice when its hook goes somewhere; else its hook's text, shown."""
    link_label = strings[0] if strings else None
    targets = [n for n in flatten(body) if isinstance(n, Link)]
    if link_label and targets:
        if len(targets) > 1:
            ctx.warn(f"({name}:) '{link_label}' leads to several passages; the first, '{targets[0].target}', is kept")
        return [Link(link_label, targets[0].target, effects_of(flatten(body)))]
    ctx.warn(f"the text revealed by ({name}: {args.strip()[:40]}) is shown at once")
    return ([link_label] if link_label else []) + body

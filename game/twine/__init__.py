"""Twine in and out: import Twee 3 and Twine 2 HTML (published stories and library archives), export Twee 3.

Import maps passages to slides and ``[[...]]`` links (every form: ``[[T]]``, ``[[L->T]]``, ``[[T<-L]]``,
``[[L|T]]``, SugarCube's ``][setter]`` tail) to choices, with Twine's own rules for picking the separator.
Special passages (StoryTitle, StoryData, scripts, stylesheets, format-specific ones) are skipped; story-format
code (Harlowe, SugarCube, Chapbook, Snowman) is mapped to our state, conditions and choices where a story of ours
can say the same, and stripped from the text, with a warning, where it cannot; broken links are reported and
dropped.  Export writes Twee 3 that opens in Twine, with our picture settings in the passages' metadata so that
ours -> Twee -> ours keeps every slide, choice and image field.  (Format reference:
../shared/reference/twine-formats.md.)

The modules, in the order a file goes through them on import:

- `twee`: reading Twee 3 and Twine 2 HTML into passages; ``[[link]]`` syntax.
- `nodes`: the tree a passage becomes (text, links, conditions, sets, prints) and the conversion's context.
- `expressions`: Twine expressions and assignments as ours.
- `passages`: what the format readers share (links, gotos, includes, prose markup).
- `harlowe`, `sugarcube`, `chapbook`, `snowman`: one reader per story format (`snowman` reads plain Twine too).
- `lower`: a tree as our slide text, choices and arrival sets.
- `variables`: the story's variables as our declared state.
- `importer`: the whole story into our format; `repair` drops what our checks refuse.
- `export` (with `writer`, the per-format syntax): our story as Twee 3.
"""

from game.twine.export import export_report
from game.twine.export import export_twee
from game.twine.importer import clean_text
from game.twine.importer import import_file
from game.twine.importer import to_story_data
from game.twine.nodes import detect_format
from game.twine.twee import Passage
from game.twine.twee import TwineError
from game.twine.twee import TwineStory
from game.twine.twee import parse_html
from game.twine.twee import parse_links
from game.twine.twee import parse_twee

__all__ = ["Passage", "TwineError", "TwineStory", "clean_text", "detect_format", "export_report", "export_twee",
           "import_file", "parse_html", "parse_links", "parse_twee", "to_story_data"]

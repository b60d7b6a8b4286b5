"""The last step of an import: load the converted story with our own checks, and drop (with a warning) each
condition, effect, conditional text or variable they refuse, until the story loads."""

from __future__ import annotations

import re
from typing import Any

from game.story import Problem
from game.story import StoryError
from game.story import dump_document
from game.story import load_story

MAX_ROUNDS = 8


def repair(data: dict[str, Any], warnings: list[str]) -> None:
    """Load the converted story and drop, with a warning, any condition, effect or template our checks refuse."""
    for _ in range(MAX_ROUNDS):
        try:
            load_story(dump_document(data), "import", "import")
            return
        except StoryError as exc:
            changed = False
            for problem in exc.problems:
                if problem.severity == "error" and problem.field:
                    changed = _drop(data, problem, warnings) or changed
            if not changed:
                return


def _drop(data: dict[str, Any], problem: Problem, warnings: list[str]) -> bool:
    """Drop what ``problem`` is about, saying so; False when it is nothing we can drop."""
    slide = data["slides"].get(problem.slide) if problem.slide else None
    field_ = problem.field or ""
    match = re.fullmatch(r"choices\[(\d+)\]\.(if|set)(?:\.(\w+))?", field_)
    if slide is not None and match and int(match.group(1)) < len(slide.get("choices", [])):
        return _drop_from_choice(slide["choices"][int(match.group(1))], match, problem, warnings)
    if slide is not None and field_ in ("image.from", "image.strength") and isinstance(slide.get("image"), dict):
        warnings.append(f"slide '{problem.slide}': its picture cannot continue another one ({problem.message}); it "
                        "is painted as a picture of its own")
        image = slide["image"].get("prompt")
        if image:
            slide["image"] = image
        else:
            del slide["image"]
        return True
    holder, key = (slide.get("image") if slide is not None else None, "prompt") if field_ == "image.prompt" else (
        slide, field_)
    if (slide is not None and field_ in ("text", "image", "image.prompt") and isinstance(holder, dict)
            and "{" in str(holder.get(key, ""))):
        warnings.append(f"slide '{problem.slide}': its conditional text cannot be kept "
                        f"({problem.message}); every part is shown")
        holder[key] = re.sub(r"\{%.*?%\}|\{\{.*?\}\}", "", holder[key]).strip() or problem.slide
        return True
    if field_.startswith("state.") and field_[6:] in data.get("state", {}):
        warnings.append(f"variable '{field_[6:]}' cannot be kept ({problem.message}); dropped")
        del data["state"][field_[6:]]
        return True
    return False


def _drop_from_choice(choice: dict[str, Any], match: re.Match[str], problem: Problem, warnings: list[str]) -> bool:
    """Drop a choice's condition (the choice is then always open) or one of its effects."""
    if match.group(2) == "if" and "if" in choice:
        warnings.append(f"slide '{problem.slide}': the condition of '{choice['text']}' ({choice['if']}) "
                        f"cannot be kept ({problem.message}); the choice is always open")
        del choice["if"]
        return True
    if match.group(3) and match.group(3) in choice.get("set", {}):
        warnings.append(f"slide '{problem.slide}': the effect {match.group(3)} = "
                        f"{choice['set'][match.group(3)]} of '{choice['text']}' cannot be kept "
                        f"({problem.message}); dropped")
        del choice["set"][match.group(3)]
        if not choice["set"]:
            del choice["set"]
        return True
    return False

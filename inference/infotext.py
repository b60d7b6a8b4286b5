"""A1111's infotext, read back: the "parameters" text a picture carries, and the fields A1111 finds in it.

Ported from A1111 v1.10 so /sdapi/v1/png-info answers as A1111 does: modules/images.py ``read_info_from_image``
(a PNG's text chunks, a JPEG's or WebP's EXIF UserComment), modules/infotext_utils.py ``parse_generation_parameters``
(with ``quote``, ``unquote`` and ``restore_old_hires_fix_params``), modules/infotext_versions.py ``backcompat`` and
modules/prompt_parser.py ``parse_prompt_attention`` (to tell whether a prompt uses emphasis).  Not ported: moving
saved prompt styles out of the prompt (A1111's "Apply if any"; this server's styles are the stories' own) and
NovelAI's JSON comments.  Pure: no torch, no Flask.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")
RE_ATTENTION = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)
RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
# what read_info_from_image drops from a picture's info (A1111's IGNORED_INFO_KEYS)
IGNORED_INFO_KEYS = {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
                     "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity", "photoshop"}
USER_COMMENT = 0x9286  # EXIF UserComment, where A1111 writes the infotext of a JPEG or WebP
EXIF_IFD = 0x8769


def quote(text: Any) -> Any:
    """A value as A1111 writes it into an infotext: JSON-quoted when it holds a comma, colon or line break."""
    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> Any:
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_info(image: Any) -> tuple[str | None, dict[str, Any]]:
    """A picture's infotext (its "parameters" text chunk, or its EXIF UserComment) and its other info items, as
    JSON-safe values (A1111's read_info_from_image)."""
    raw = dict(image.info or {})
    geninfo = raw.pop("parameters", None)
    items: dict[str, Any] = {}
    if "exif" in raw:
        comment = _exif_comment(image)
        if comment:
            items["exif comment"] = comment
            geninfo = comment
    elif "comment" in raw:  # GIF
        comment = raw["comment"]
        geninfo = comment.decode("utf8", errors="ignore") if isinstance(comment, bytes) else comment
    for key, value in raw.items():
        if key in IGNORED_INFO_KEYS or not isinstance(key, str):
            continue
        if isinstance(value, bytes):
            value = value.decode("utf8", errors="ignore")
        items[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
    if geninfo is not None and not isinstance(geninfo, str):
        geninfo = str(geninfo)
    return geninfo, items


def _exif_comment(image: Any) -> str:
    """The EXIF UserComment as piexif's UserComment.load reads it (an 8-byte character code, then the text)."""
    try:
        raw = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT, b"")
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):
        return ""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes):
        return ""
    code, body = raw[:8], raw[8:]
    if code == b"UNICODE\x00":
        return body.decode("utf_16_be", errors="ignore")
    if code == b"ASCII\x00\x00\x00":
        return body.decode("ascii", errors="ignore")
    if code == b"JIS\x00\x00\x00\x00\x00":
        return body.decode("shift_jis", errors="ignore")
    return raw.decode("utf8", errors="ignore")


def parse_prompt_attention(text: str) -> list[list[Any]]:
    """A prompt's parts and their attention weights: ``(a)`` x1.1, ``[a]`` /1.1, ``(a:1.3)`` x1.3, backslash escapes
    (A1111's prompt_parser.parse_prompt_attention)."""
    res: list[list[Any]] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for position in range(start, len(res)):
            res[position][1] *= multiplier

    for match in RE_ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0])
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            for index, part in enumerate(re.split(RE_BREAK, token)):
                if index > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for position in round_brackets:
        multiply_range(position, 1.1)
    for position in square_brackets:
        multiply_range(position, 1 / 1.1)
    return _merge_runs(res or [["", 1.0]])


def _merge_runs(res: list[list[Any]]) -> list[list[Any]]:
    """Neighbouring parts of the same weight joined into one."""
    index = 0
    while index + 1 < len(res):
        if res[index][1] == res[index + 1][1]:
            res[index][0] += res[index + 1][0]
            res.pop(index + 1)
        else:
            index += 1
    return res


def _old_hires_fix_first_pass_dimensions(width: int, height: int) -> tuple[int, int]:
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def _restore_old_hires_fix_params(res: dict[str, Any]) -> None:
    """Infotexts with the old "First pass size" become width, height and hires resize (A1111's default settings)."""
    firstpass_width, firstpass_height = res.get("First pass size-1"), res.get("First pass size-2")
    if firstpass_width is None or firstpass_height is None:
        return
    first_w, first_h = int(firstpass_width), int(firstpass_height)
    width, height = int(res.get("Size-1", 512)), int(res.get("Size-2", 512))
    if first_w == 0 or first_h == 0:
        first_w, first_h = _old_hires_fix_first_pass_dimensions(width, height)
    res["Size-1"], res["Size-2"] = first_w, first_h
    res["Hires resize-1"], res["Hires resize-2"] = width, height


def _version(text: Any) -> tuple[int, int, int, int] | None:
    """An A1111 version ("v1.7.0-225-g…") as (major, minor, patch, commits after the tag); None when not one."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:-(\d+))?(?:-.*)?", str(text or "").strip())
    if match is None:
        return None
    major, minor, patch, post = match.groups()
    return int(major), int(minor), int(patch or 0), int(post or 0)


def _backcompat(res: dict[str, Any]) -> None:
    """The compatibility settings an infotext of an older A1111 implies (A1111's infotext_versions.backcompat)."""
    version = _version(res.get("Version"))
    if version is None:
        return
    if version < (1, 6, 0, 0) and "[" in res.get("Prompt", ""):
        res["Old prompt editing timelines"] = True
    if version < (1, 6, 0, 0) and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if version < (1, 7, 0, 225):
        res["Downcast alphas_cumprod"] = True
    if version < (1, 8, 0, 0) and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


def parse_generation_parameters(text: str) -> dict[str, Any]:
    """The fields of an infotext, as A1111's parse_generation_parameters returns them (the values as written, a size
    split into ``Size-1`` and ``Size-2``, and A1111's defaults for the fields a picture's infotext leaves out)."""
    res: dict[str, Any] = {}
    prompt, negative_prompt, done_with_prompt = "", "", False
    *lines, lastline = text.strip().split("\n")
    if len(RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    for key, value in RE_PARAM.findall(lastline):
        if value and value[0] == '"' and value[-1] == '"':
            value = unquote(value)
        size = RE_IMAGESIZE.match(value) if isinstance(value, str) else None
        if size is not None:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value
    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt
    res.setdefault("Clip skip", "1")
    if res.get("Hypernet") is not None:
        res["Prompt"] += f"<hypernet:{res['Hypernet']}:{res.get('Hypernet strength', '1.0')}>"
    if "Hires resize-1" not in res:
        res["Hires resize-1"] = 0
        res["Hires resize-2"] = 0
    for key, default in (("Hires sampler", "Use same sampler"), ("Hires schedule type", "Use same scheduler"),
                         ("Hires checkpoint", "Use same checkpoint"), ("Hires prompt", ""),
                         ("Hires negative prompt", ""), ("Mask mode", "Inpaint masked"), ("Masked content", "original"),
                         ("Inpaint area", "Whole picture"), ("Masked area padding", 32)):
        res.setdefault(key, default)
    _restore_old_hires_fix_params(res)
    for key, default in (("RNG", "GPU"), ("Schedule type", "Automatic"), ("Schedule max sigma", 0),
                         ("Schedule min sigma", 0), ("Schedule rho", 0), ("VAE Encoder", "Full"),
                         ("VAE Decoder", "Full"), ("FP8 weight", "Disable")):
        res.setdefault(key, default)
    if "Cache FP16 weight for LoRA" not in res and res["FP8 weight"] != "Disable":
        res["Cache FP16 weight for LoRA"] = False
    attention = parse_prompt_attention(prompt) + parse_prompt_attention(negative_prompt)
    if "Emphasis" not in res and any(weight != 1.0 and part != "BREAK" for part, weight in attention):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)
    _backcompat(res)
    return res

"""Quoting personal text (and metadata) for the prompt: nothing inside can act as a delimiter.

Everything from the user's data that reaches the prompt (item text, speaker
names, task names, caller ids and file names in the source table) goes through
:func:`clean_text`:

- folded onto one line, so it cannot start a line of its own (a heading, a
  closing tag, a numbered reference);
- invisible format characters removed: zero-width spaces and joiners, soft
  hyphens, bidi embeddings, overrides and isolates (an RTL override can make
  ``>atad_resu/<`` display as a closing tag);
- any spelling of a ``user_data`` tag defused (``<`` becomes ``‹``), found on a
  *skeleton* of the text: NFKC-normalized (full-width and compatibility forms),
  with look-alike letters and punctuation mapped to ASCII (Cyrillic ``е``,
  Greek ``α``, ``∕``, ``﹤``...), forwards and reversed;
- look-alikes of the prompt's own references (``[#1 bank.pdf]``, ``[3]``)
  neutralized (``[`` becomes ``(``): the prompt's references are line numbers
  the library assigns, and no text can forge one.

Speaker labels from data (a message's ``name``) that read as a chat role
(``system``, ``assistant``...) are quoted by :func:`speaker_label`, so a
message named "system" cannot pass for a system turn.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean_text", "skeleton", "speaker_label"]

_WS = re.compile(r"\s+")
# Zero-width and bidi format characters, soft hyphen, word joiner, invisible
# operators, the BOM, the Mongolian vowel separator, variation selectors and tags.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
# Look-alikes NFKC leaves alone, mapped to the ASCII character they imitate
# (the letters of "user_data" and the tag's punctuation; from Unicode's
# confusables.txt, restricted to what the tag check needs).
_CONFUSABLES = {
    # <
    "\u2039": "<", "\u02c2": "<", "\u1438": "<", "\u16b2": "<", "\u2329": "<", "\u3008": "<", "\u27e8": "<",
    "\u276e": "<", "\u29fc": "<", "\U0001d236": "<",
    # >
    "\u203a": ">", "\u02c3": ">", "\u1433": ">", "\u232a": ">", "\u3009": ">", "\u27e9": ">", "\u276f": ">",
    "\u29fd": ">",
    # /
    "\u2215": "/", "\u2044": "/", "\u29f8": "/", "\u2571": "/", "\u30ce": "/", "\u4e3f": "/", "\u1735": "/",
    "\u2f03": "/", "\u3033": "/", "\U0001d23a": "/",
    # _
    "\u2017": "_", "\u02cd": "_", "\u0332": "_", "\uff3f": "_",
    # letters of "user_data"
    "\u0430": "a", "\u03b1": "a", "\u0251": "a", "\u237a": "a",
    "\u0435": "e", "\u0454": "e", "\u04bd": "e", "\u212e": "e", "\u0117": "e", "\u0229": "e",
    "\u0455": "s", "\u01bd": "s", "\ua731": "s",
    "\u0433": "r", "\u1d26": "r", "\u2c85": "r", "\uab81": "r",
    "\u0501": "d", "\u13e7": "d", "\u146f": "d", "\ua4d2": "d",
    "\u03c4": "t", "\u0442": "t", "\u1d1b": "t",
    "\u03c5": "u", "\u057d": "u", "\u1d1c": "u", "\ua79f": "u", "\u028b": "u",
    "\u0410": "a", "\u0391": "a", "\u0415": "e", "\u0395": "e", "\u0405": "s", "\u03a4": "t", "\u0422": "t",
    # the other letters of role names (system, assistant, developer, tool...)
    "\u0443": "y", "\u04af": "y", "\u0423": "y", "\u03a5": "y", "\u04ae": "y",
    "\u043e": "o", "\u03bf": "o", "\u041e": "o", "\u039f": "o", "\u0585": "o",
    "\u0440": "p", "\u03c1": "p", "\u0420": "p", "\u03a1": "p",
    "\u0441": "c", "\u0421": "c", "\u03f2": "c", "\u0445": "x", "\u0425": "x", "\u03a7": "x",
    "\u0456": "i", "\u0406": "i", "\u03b9": "i", "\u0399": "i", "\u0131": "i", "\u0458": "j", "\u0408": "j",
    "\u043c": "m", "\u041c": "m", "\u039c": "m", "\u043d": "h", "\u041d": "h", "\u0397": "h",
    "\u03bd": "v", "\u0475": "v", "\u0578": "n", "\u043f": "n", "\u039d": "n", "\u04cf": "l",
    "\u041a": "k", "\u039a": "k", "\u03ba": "k", "\u0412": "b", "\u0392": "b",
}
_TAG = re.compile(r"<[\s_-]*/?[\s_-]*user[\s_-]*data", re.IGNORECASE)
_REVERSED = re.compile(r"atad[\s_-]*resu[\s_-]*/?[\s_-]*<", re.IGNORECASE)
_MAYBE_TAG = re.compile(r"[<\u2039\u02c2\u1438\u16b2\u2329\u3008\u27e8\u276e\u29fc\ufe64\uff1c\U0001d236]")
# "[#12 x]", "[# 3]", "[12]", "[3 a.pdf]": what a reference or citation looks like.
_REF_LIKE = re.compile(r"[\[\uff3b\u27e6\u3010](?=\s*#|\s*\d+\s*[\]\uff3d\u27e7\u3011\s;,])")
_ROLES = frozenset({
    "system", "assistant", "user", "developer", "tool", "function", "human", "ai", "model", "bot",
    "sys", "admin", "administrator", "root", "operator", "instruction", "instructions",
})


def _skel(ch: str) -> str:
    folded = unicodedata.normalize("NFKC", ch)
    return "".join(_CONFUSABLES.get(c, c) for c in folded).lower()


def skeleton(text: str) -> tuple[str, list[int]]:
    """The text as compared against delimiters, and for each of its characters the index it came from.

    NFKC, look-alikes mapped to ASCII, lower case; invisible characters dropped.
    """
    out: list[str] = []
    index: list[int] = []
    for n, ch in enumerate(text):
        if _INVISIBLE.match(ch):
            continue
        s = ch.lower() if ch < "\u0080" else _skel(ch)
        out.append(s)
        index.extend([n] * len(s))
    return "".join(out), index


def _defuse_tags(text: str) -> str:
    skel, index = skeleton(text)
    starts = {index[m.start()] for m in _TAG.finditer(skel)}
    starts |= {index[m.end() - 1] for m in _REVERSED.finditer(skel)}
    if not starts:
        return text
    # The character that opens the tag (whatever it looks like) becomes "‹".
    return "".join("\u2039" if n in starts else ch for n, ch in enumerate(text))


def clean_text(text: str) -> str:
    """``text`` made safe to quote inside a ``<user_data>`` block (see the module docstring)."""
    if text.isascii():
        # The common case, kept as cheap as folding alone: no invisible
        # characters or look-alikes exist in ASCII, and a tag needs a "<".
        text = _WS.sub(" ", text).strip()
        if "[" in text:
            text = _REF_LIKE.sub("(", text)
        return _defuse_tags(text) if "<" in text else text
    text = _WS.sub(" ", _INVISIBLE.sub("", text)).strip()
    text = _REF_LIKE.sub("(", text)
    if _MAYBE_TAG.search(text) or _MAYBE_TAG.search(unicodedata.normalize("NFKC", text)):
        text = _defuse_tags(text)  # a tag, forwards or reversed, needs a "<" or a look-alike of it
    return text


def speaker_label(name: str, *, from_role: bool = False) -> str:
    """A speaker's label for a chat turn: the cleaned name, quoted when it reads as a chat role.

    ``from_role``: the label is the message's validated role (``user`` or
    ``assistant``), which the library itself assigns and shows as is.
    """
    label = clean_text(name)[:40].rstrip(":").strip()
    if from_role and label in ("user", "assistant"):
        return label
    skel = re.sub(r"[^a-z]", "", label.lower() if label.isascii() else skeleton(label)[0])
    if skel in _ROLES or any(skel.startswith(r) for r in ("system", "assistant", "developer")):
        return f"\u201c{label.replace(chr(0x201d), '')}\u201d"
    return label

"""Chat text made safe for the Chatbot's markdown renderer: markdown renders, raw HTML never does.

Every `&`, `<` and `>` outside code is escaped, so no HTML tag, entity trick or autolink can form
and the text shows as typed. Code is left as written, because the renderer escapes code itself
(escaping it here would show `&lt;` inside a code block): fenced blocks at the top level and
inline code spans, found by CommonMark's rules (a span over several lines is escaped after all).
Where a backtick may sit inside a link's destination, whether it opens a span depends on whether
the link forms, so that paragraph is escaped whole: wrong only in how a rare span looks. Gradio's
own sanitizer runs after this, as a second line. Blockquotes are lost (`>` is escaped): a fair
price for never passing markup through.
"""

from __future__ import annotations

import html
import re

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_INLINE_SPECIAL = re.compile(r"[\\`]")  # what _inline looks at: a backslash and a backtick
_BLANK_LINE = re.compile(r"(\n[ \t]*\n)")  # ends a paragraph: no code span or link crosses it


# Brackets an answer's footer (its figures, model and price): invisible on the page, it lets the page's
# copy take the answer only (session.py PAGE_JS). Never part of the model's own text (as_answer).
FOOTER_MARK = "\u2063"  # INVISIBLE SEPARATOR
# Between the marks the footer is an element of its own, which the page's style draws as a small,
# muted line (session.py PAGE_CSS): the one piece of HTML a bubble holds, and ours.
FOOTER_OPEN = f'{FOOTER_MARK}<span class="gc-footer">'
FOOTER_CLOSE = f"</span>{FOOTER_MARK}"


def with_footer(body: str, footer: str) -> str:
    """An answer bubble's markdown: `body`, then `footer` in its element between FOOTER_MARKs.

    Both are text, made safe here (as_markdown); a code block the body leaves open (an answer cut off
    by its token limit) is closed, or the footer would show inside it as code.
    """
    body = as_markdown(body.replace(FOOTER_MARK, ""), close_fence=True)
    footer = f"{FOOTER_OPEN}{as_markdown(footer.replace(FOOTER_MARK, ''))}{FOOTER_CLOSE}"
    return f"{body}\n\n{footer}" if body else footer


def escape_text(text: str) -> str:
    return html.escape(text, quote=False)


_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def as_literal(text: str) -> str:
    """User text inside a message that a gr.Markdown renders (a chat title in "Renamed to …"):
    shown exactly as typed, forming no markdown at all (no image fetched, no link, no emphasis).
    CommonMark lets any ASCII punctuation be backslash-escaped; &, < and > become entities."""
    escaped = _MARKDOWN_PUNCTUATION.sub(lambda m: m.group(1) if m.group(1) in "&<>" else "\\" + m.group(1), text)
    return html.escape(escaped, quote=False)


def as_markdown(text: str, *, close_fence: bool = False) -> str:
    """`text` (a prompt or an answer) as markdown whose only HTML is what markdown itself makes.
    `close_fence`: a fenced code block left open at the end is closed, for markdown that follows."""
    lines = text.split("\n")
    out: list[str] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        opened = _FENCE_OPEN.match(lines[i])
        if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
            if prose:
                out.append(_inline("\n".join(prose)))
                prose = []
            fence = opened.group(1)
            closing = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$")
            block = [lines[i]]
            i += 1
            while i < len(lines):
                block.append(lines[i])
                i += 1
                if closing.match(block[-1]):
                    break
            else:  # an unclosed fence runs to the end, as in CommonMark
                if close_fence:  # indented as it opened: inside a list item too
                    block.append(" " * opened.start(1) + fence)
            out.append("\n".join(block))
            continue
        prose.append(lines[i])
        i += 1
    if prose:
        out.append(_inline("\n".join(prose)))
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape prose, keeping inline code spans (CommonMark's backtick rules, with backslash escapes)."""
    pieces = _BLANK_LINE.split(text)  # paragraphs, with the blank lines between them at odd places
    return "".join(piece if index % 2 else _inline_paragraph(piece) for index, piece in enumerate(pieces))


def _inline_paragraph(text: str) -> str:
    link_start = text.find("](")
    if link_start >= 0 and "`" in text[link_start:]:
        # A backtick after "](" may sit in a link's destination or title, or open a code span, by
        # rules too subtle to copy safely (nested parentheses, titles, a bad title making no link).
        return escape_text(text)
    out: list[str] = []
    i, start, n = 0, 0, len(text)
    while i < n:
        found = _INLINE_SPECIAL.search(text, i)  # jump over plain prose: a long chat has much of it
        if found is None:
            break
        i = found.start()
        char = text[i]
        if char == "\\" and i + 1 < n:
            i += 2
            continue
        if char != "`":
            i += 1  # a backslash that ends the text
            continue
        run_end = i
        while run_end < n and text[run_end] == "`":
            run_end += 1
        ticks = run_end - i
        close = _closing_run(text, run_end, ticks)
        if close is None:
            i = run_end  # no closing run: the backticks are plain text
            continue
        out.append(escape_text(text[start:i]))
        span = text[i : close + ticks]
        # A span over several lines may be cut by a block that starts on one of them (a quote, a
        # heading): then its text is prose to the renderer, so it is escaped like prose.
        out.append(escape_text(span) if "\n" in span else span)
        i = start = close + ticks
    out.append(escape_text(text[start:]))
    return "".join(out)


def _closing_run(text: str, position: int, ticks: int) -> int | None:
    while True:
        found = text.find("`" * ticks, position)
        if found < 0:
            return None
        end = found
        while end < len(text) and text[end] == "`":
            end += 1
        if end - found == ticks:
            return found
        position = end

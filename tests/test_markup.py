"""Chat text for the markdown renderer: markdown renders, raw HTML never becomes HTML, code stays as typed."""

from __future__ import annotations

import html

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from gemma_chat.ui.markup import FOOTER_CLOSE, FOOTER_MARK, FOOTER_OPEN, as_literal, as_markdown, with_footer
from gemma_chat.ui.transcript import answer_footer

# CommonMark with raw HTML on: if anything of ours were HTML to a renderer, it would show up here.
RENDERER = MarkdownIt("commonmark", {"html": True}).enable("table")
PIECES = ["<", ">", "&", "`", "``", "```", "~~~", "\n", " ", "\\", "[", "](", ")", "<img src=x onerror=alert(1)>",
          "<script>", "</b>", "<!--", "<?x", "<http://x>", "a", "py", "*", "-", "|"]


def html_tokens(text: str) -> list[str]:
    found = []
    for token in RENDERER.parse(text):
        if token.type == "html_block":
            found.append(token.content)
        for child in token.children or []:
            if child.type in ("html_inline", "html_block"):
                found.append(child.content)
            if child.type == "link_open" and child.attrs.get("href", "").startswith("javascript:"):
                found.append(child.attrs["href"])
    return found


def test_markdown_renders_and_code_keeps_its_characters():
    answer = "# Title\n\n- **bold** item\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nif a < b: print('&')\n```\nuse `Vec<T>` here"
    rendered = RENDERER.render(as_markdown(answer))
    assert "<h1>Title</h1>" in rendered and "<strong>bold</strong>" in rendered and "<table>" in rendered
    assert "if a &lt; b: print('&amp;')" in rendered  # shown as `if a < b: print('&')`, not as `&lt;`
    assert "<code>Vec&lt;T&gt;</code>" in rendered


def test_code_after_a_link_keeps_its_characters_in_the_next_paragraph():
    text = "See [the docs](https://x.test/a_b).\n\nUse `a < b` here."
    assert as_markdown(text) == "See [the docs](https://x.test/a_b).\n\nUse `a < b` here."


def test_html_outside_code_is_text():
    hostile = '<img src=x onerror="alert(1)"> <script>alert(2)</script> [x](javascript:alert(3)) <a href="x">a</a>'
    assert as_markdown(hostile) == html.escape(hostile, quote=False)
    assert html_tokens(as_markdown(hostile)) == []


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.lists(st.sampled_from(PIECES), max_size=30).map("".join)))
@example("[a](b`c) <img src=x onerror=alert(1)> `")
@example("\\`<i>`")
@example("```a`b\n<img src=x>\n```")
@example("](`)`<A>`")  # no "[": no link, so the backtick opens a span
@example("[x](a(b)`c)<A>`")  # nested parentheses in a destination
@example("[a](` b c)`<A>`")  # a bad title: no link after all
@example("[a](`)\n`<A>`")  # a link's title may run on to the next line
def test_no_text_becomes_html(text):
    assert html_tokens(as_markdown(text)) == []


FOOTER_TAGS = ['<span class="gc-footer">', "</span>"]  # an answer's footer, as its element opens and closes


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(st.text(), st.lists(st.sampled_from(PIECES), max_size=30).map("".join)),
    model=st.one_of(st.text(max_size=40), st.lists(st.sampled_from(PIECES), max_size=8).map("".join)),
    imported=st.booleans(),
)
@example(body="Here:\n```python\nprint(1)", model="mini", imported=False)  # an answer cut off inside its code
@example(body="- a list\n  ~~~~\n  code", model="mini", imported=False)
@example(body="answer", model="imported\n\n# from elsewhere\n- a", imported=True)
def test_an_answers_footer_is_an_element_of_its_own_and_the_bubbles_only_html(body, model, imported):
    footer = answer_footer("en", "24 tokens · 41.3 tokens/s · 0.6 s", model, None if imported else 3, "‹ 2/2 ›")
    bubble = with_footer(body, footer)
    assert html_tokens(bubble) == FOOTER_TAGS  # outside any code block: the page draws it as the footer
    assert bubble.count(FOOTER_MARK) == 2 and bubble.endswith(FOOTER_CLOSE)


LITERAL_PIECES = PIECES + ["![x](http://127.0.0.1:9/x.png)", "**", "_", "#", "> ", "1. ", "http://x.test/a.png", "&amp;", "\\"]


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(LITERAL_PIECES), max_size=20).map("".join).map(lambda t: " ".join(t.split())))
@example("![x](http://127.0.0.1:9/x.png)")
@example("<img src=x onerror=alert(1)> **bold** [link](http://x.test) http://x.test/a.png")
def test_a_literal_renders_as_exactly_the_text_typed(title):
    """A chat title (or key name) inside a confirmation (issue 21, H): no image is fetched, no link,
    no emphasis, no heading: the message shows the very characters the user typed."""
    rendered = RENDERER.render(as_literal(title)) if title else ""
    inline = rendered.removeprefix("<p>").removesuffix("</p>\n")
    assert "<" not in inline.replace("&lt;", ""), rendered  # no tag of any kind
    assert html.unescape(inline) == title

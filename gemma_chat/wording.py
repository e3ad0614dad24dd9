"""A message as its English template plus parameters, so the edge can say it in the user's language.

Imports nothing from the package: errors.py builds on it. Templates are str.format strings;
`{n:credit|credits}` is the word that goes with the number n (two forms: the English rule, three:
the Russian one). A parameter's value is never parsed again, so it may hold any text, braces included.
"""

from __future__ import annotations

import string


def plural_form(value, forms: list[str]) -> str:
    """The form of a word for the number `value`: two forms by the English rule, three by the Russian."""
    try:
        n = int(str(value).replace(",", "").strip())
    except ValueError:
        return forms[-1]
    if len(forms) == 2:
        return forms[0] if n == 1 else forms[1]
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return forms[0]
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return forms[1]
    return forms[2]


class _Formatter(string.Formatter):
    def format_field(self, value, format_spec):
        if "|" in format_spec:
            return plural_form(value, format_spec.split("|"))
        return super().format_field(value, format_spec)


_FORMATTER = _Formatter()


def render(template: str, params: dict) -> str:
    """`template` filled in with `params`; without params the template is the text itself (it may
    then be any text, such as an engine's error line, braces and all)."""
    return _FORMATTER.format(template, **params) if params else template


class Message(str):
    """The English text of a message that remembers its template and parameters.

    A str, so whatever shows or compares English text (logs, the /v1 API, tests) reads it as
    before; ui/text.py's translated() looks its template up instead of parsing the text back.
    """

    template: str
    params: dict

    def __new__(cls, template: str, **params):
        self = super().__new__(cls, render(template, params))
        self.template, self.params = template, params
        return self

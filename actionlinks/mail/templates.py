"""The mail of each action: a subject, a plain-text part and an HTML part.

Templates live under ``templates/email/<action>/`` (``subject.txt``,
``body.txt``, ``body.html``), with ``_default`` for actions that have none;
a ``templates/email/…`` directory in ``ACTIONLINKS_HOME`` overrides any of
them. HTML is autoescaped; the text part is not (a link stays byte for byte
the link), and puts the link alone on its own line. A subject is one line:
whatever a template or its data holds, no header can be injected through it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2

from actionlinks.assets import templates_dir
from actionlinks.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

MAX_SUBJECT = 200
"""The longest subject sent (characters)."""
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedMail:
    """A mail's three parts, rendered."""

    subject: str
    text: str
    html: str


class MailTemplates:
    """Renders the mail of an action.

    Args:
        overrides: a directory whose ``email/…`` templates win over the
            packaged ones (``ACTIONLINKS_HOME/templates``), if it exists.
    """

    __slots__ = ("_html", "_text")

    def __init__(self, overrides: Path | None = None) -> None:
        """Read templates from the override directory first, then the package."""
        folders = [templates_dir()]
        if overrides is not None and overrides.is_dir():
            folders.insert(0, overrides)
        loader = jinja2.FileSystemLoader(folders)
        options: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "auto_reload": False,
            "keep_trailing_newline": True,
        }
        self._html = jinja2.Environment(autoescape=True, **options)
        self._text = jinja2.Environment(autoescape=False, **options)  # noqa: S701 - plain text, never HTML

    def __repr__(self) -> str:
        """Name the renderer."""
        return "MailTemplates()"

    def compile(self, action: str) -> None:
        """Load and compile the three templates of ``action``.

        Raises:
            ConfigurationError: one is missing or malformed.
        """
        try:
            for environment, part in (
                (self._text, "subject.txt"),
                (self._text, "body.txt"),
                (self._html, "body.html"),
            ):
                self._pick(environment, action, part)
        except jinja2.TemplateError as exc:
            raise ConfigurationError(
                f"the mail templates of {action} do not load: {exc}"
            ) from exc

    def render(self, action: str, context: Mapping[str, Any]) -> RenderedMail:
        """The mail of ``action`` for ``context`` (``url``, ``expires_at``, …).

        Raises:
            ConfigurationError: a template is missing or does not render.
        """
        try:
            subject = self._pick(self._text, action, "subject.txt").render(context)
            text = self._pick(self._text, action, "body.txt").render(context)
            html = self._pick(self._html, action, "body.html").render(
                {**context, "subject": _one_line(subject)}
            )
        except Exception as exc:  # a template's own code may raise anything
            raise ConfigurationError(
                f"the mail templates of {action} do not render: {exc}"
            ) from exc
        return RenderedMail(subject=_one_line(subject), text=text, html=html)

    @staticmethod
    def _pick(
        environment: jinja2.Environment, action: str, part: str
    ) -> jinja2.Template:
        return environment.select_template(
            [f"email/{action}/{part}", f"email/_default/{part}"]
        )


def _one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()[:MAX_SUBJECT]

"""The pages people see: per-action texts and fields, rendered with Jinja2.

Templates live in ``templates/pages/`` (inside the wheel as
``actionlinks/templates``); autoescaping is always on. A per-action template
``pages/confirm-{action}.html`` overrides the generic confirmation page.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jinja2
from jinja2 import nodes
from markupsafe import escape

from actionlinks.assets import templates_dir

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

MIN_PASSWORD_LENGTH = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """A form field on a confirmation page."""

    name: str
    label: str
    type: str = "text"
    autocomplete: str | None = None
    minlength: int | None = None
    same_as: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PageText:
    """What a confirmation page says and asks for."""

    title: str
    prompt: str
    button: str
    done: str
    fields: tuple[Field, ...] = field(default=())


_PASSWORD_FIELDS = (
    Field(
        name="password",
        label="New password",
        type="password",
        autocomplete="new-password",
        minlength=MIN_PASSWORD_LENGTH,
    ),
    Field(
        name="password_confirm",
        label="Repeat the new password",
        type="password",
        autocomplete="new-password",
        minlength=MIN_PASSWORD_LENGTH,
        same_as="password",
    ),
)

TEXTS: dict[str, PageText] = {
    "password-reset": PageText(
        title="Choose a new password",
        prompt="Enter your new password twice.",
        button="Set new password",
        done="Your password has been changed.",
        fields=_PASSWORD_FIELDS,
    ),
    "email-confirm": PageText(
        title="Confirm your e-mail address",
        prompt="Press the button to confirm your e-mail address.",
        button="Confirm my address",
        done="Your e-mail address is confirmed.",
    ),
    "magic-signin": PageText(
        title="Sign in",
        prompt="Press the button to finish signing in.",
        button="Sign in",
        done="You are signed in.",
    ),
    "invite": PageText(
        title="Accept your invitation",
        prompt="Press the button to accept the invitation.",
        button="Accept invitation",
        done="Invitation accepted. Welcome!",
    ),
    "unsubscribe": PageText(
        title="Unsubscribe",
        prompt="Press the button to stop receiving these e-mails.",
        button="Unsubscribe",
        done="You are unsubscribed.",
    ),
}


def text_for(action: str) -> PageText:
    """The page text of ``action`` (a generic one for undeclared texts)."""
    found = TEXTS.get(action)
    if found is not None:
        return found
    readable = action.replace("-", " ")
    return PageText(
        title=f"Confirm: {readable}",
        prompt="Press the button to continue.",
        button="Continue",
        done="Done.",
    )


def check_form(text: PageText, form: Mapping[str, str]) -> dict[str, str] | str:
    """The declared fields of ``form`` if they are valid, else a message."""
    clean: dict[str, str] = {}
    for item in text.fields:
        value = form.get(item.name, "")
        if not value:
            return f"Please fill in “{item.label}”."
        if item.same_as is not None and value != form.get(item.same_as):
            return "The two passwords do not match."
        if item.minlength is not None and len(value) < item.minlength:
            return f"“{item.label}” needs at least {item.minlength} characters."
        if len(value) > 1024:
            return f"“{item.label}” is too long."
        clean[item.name] = value
    return clean


_FIXED_PAGES = 256
"""The most fixed pages kept rendered (one per action and mount prefix)."""
_SLOTS = ("static_url", "nonce", "action_url", "expires_at")
"""The values of a confirmation page that change from link to link."""
_PROBES = (
    {
        "static_url": "/pre'fix\"/static",
        "nonce": "<script>alert(1)</script>",
        "action_url": '/a/"><img src=x onerror=alert(1)>',
        "expires_at": "2026-12-02 12:00 UTC & <b>",
    },
    {
        "static_url": "",
        "nonce": "é\u2028&amp;",
        "action_url": "{{ nonce }}",
        "expires_at": "{% raw %}",
    },
)
"""Hostile values a cached shape must fill in exactly as Jinja renders them."""


@dataclass(frozen=True, slots=True)
class _Shape:
    """A confirmation page rendered once, cut where the per-link values go."""

    literals: tuple[str, ...]
    slots: tuple[str, ...]

    def fill(self, values: Mapping[str, str]) -> str:
        parts = [self.literals[0]]
        for slot, literal in zip(self.slots, self.literals[1:], strict=True):
            parts.append(escape(values[slot]))
            parts.append(literal)
        return "".join(parts)


class PageRenderer:
    """Renders the pages with autoescaping, from one template folder.

    A link's confirmation page is rendered by Jinja once per action and text;
    later pages fill the per-link values (:data:`_SLOTS`) into that rendering,
    escaped as Jinja escapes them. The shape is used only after it filled
    hostile probe values byte for byte as Jinja rendered them: a template that
    does more with those values than print them is rendered every time.
    """

    __slots__ = ("_confirm", "_environment", "_fixed", "_shapes")

    def __init__(self, directory: Path | None = None) -> None:
        """Load templates from ``directory`` (the packaged ones by default).

        Templates are read once; edits take effect when the service restarts.
        """
        self._environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory or templates_dir()),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
        )
        self._confirm: dict[str, jinja2.Template] = {}
        self._shapes: dict[tuple[str, PageText], _Shape | None] = {}
        self._fixed: dict[tuple[object, ...], str] = {}

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """Render ``pages/{name}.html``."""
        return self._environment.get_template(f"pages/{name}.html").render(context)

    def fixed_page(self, name: str, context: Mapping[str, str]) -> str:
        """Render ``pages/{name}.html`` once for each distinct ``context``.

        For pages that show nothing of a link (the success pages): the same
        text values always give the same page.
        """
        key = (name, *context.items())
        page = self._fixed.get(key)
        if page is None:
            if len(self._fixed) >= _FIXED_PAGES:
                self._fixed.clear()
            page = self._fixed[key] = self.render(name, context)
        return page

    def render_confirm(self, action: str, context: Mapping[str, Any]) -> str:
        """Render the action's own confirmation page, or the generic one."""
        return self._confirm_template(action).render(context)

    def _confirm_template(self, action: str) -> jinja2.Template:
        template = self._confirm.get(action)
        if template is None:
            template = self._environment.select_template(
                [f"pages/confirm-{action}.html", "pages/confirm.html"]
            )
            self._confirm[action] = template
        return template

    def confirm_page(
        self, action: str, text: PageText, values: Mapping[str, str]
    ) -> str:
        """The confirmation page of a link with no problem to show.

        Args:
            action: the action name.
            text: what the page says.
            values: the per-link values, one per name in :data:`_SLOTS`.
        """
        key = (action, text)
        if key not in self._shapes:
            self._shapes[key] = self._shape(action, text)
        shape = self._shapes[key]
        if shape is None:
            return self.render_confirm(action, _confirm_context(text, values))
        return shape.fill(values)

    def _shape(self, action: str, text: PageText) -> _Shape | None:
        template = self._confirm_template(action)
        if template.name is None or not _prints_slots_only(
            self._environment, template.name, set()
        ):
            return None
        markers = {
            f"al{secrets.token_hex(12)}{index}": slot
            for index, slot in enumerate(_SLOTS)
        }
        marked = self.render_confirm(
            action,
            _confirm_context(text, {slot: marker for marker, slot in markers.items()}),
        )
        pieces = re.split(f"({'|'.join(markers)})", marked)
        shape = _Shape(
            literals=tuple(pieces[::2]),
            slots=tuple(markers[marker] for marker in pieces[1::2]),
        )
        for probe in _PROBES:
            if shape.fill(probe) != self.render_confirm(
                action, _confirm_context(text, probe)
            ):
                return None
        return shape


def _prints_slots_only(
    environment: jinja2.Environment, name: str, seen: set[str]
) -> bool:
    """Whether ``name`` and the templates it pulls in only print the slots.

    Each per-link value (:data:`_SLOTS`) may appear only as a plain
    ``{{ value }}``: no filter, test, condition, loop, assignment or
    expression of it, which a cached shape could not reproduce for values
    other than the ones it was checked with. Templates it extends or includes
    must be named by constants and obey the same rule.
    """
    if name in seen:
        return True
    seen.add(name)
    loader = environment.loader
    if loader is None:  # pragma: no cover - PageRenderer always has one
        return False
    source, _, _ = loader.get_source(environment, name)
    tree = environment.parse(source)
    pulling = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
    for node in tree.find_all(pulling):
        pulled = getattr(node, "template", None)
        if not isinstance(pulled, nodes.Const) or not isinstance(pulled.value, str):
            return False
        if not _prints_slots_only(environment, pulled.value, seen):
            return False
    return _slots_printed_plainly(tree)


def _slots_printed_plainly(node: nodes.Node, parent: nodes.Node | None = None) -> bool:
    if isinstance(node, nodes.Name) and node.name in _SLOTS:
        return isinstance(parent, nodes.Output)
    return all(_slots_printed_plainly(child, node) for child in node.iter_child_nodes())


def _confirm_context(text: PageText, values: Mapping[str, str]) -> dict[str, Any]:
    return {
        "title": text.title,
        "prompt": text.prompt,
        "button": text.button,
        "fields": text.fields,
        "problem": None,
        **values,
    }

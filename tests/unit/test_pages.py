"""Confirmation pages filled into a cached rendering equal Jinja's, byte for byte."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actionlinks.web.pages import TEXTS, PageRenderer, text_for

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from("<>&\"'{}%#"),
    max_size=60,
)


def _jinja(renderer, action, text, values):
    return renderer.render_confirm(
        action,
        {
            "title": text.title,
            "prompt": text.prompt,
            "button": text.button,
            "fields": text.fields,
            "problem": None,
            **values,
        },
    )


@settings(max_examples=300)
@given(
    action=st.sampled_from([*TEXTS, "delete-account"]),
    static_url=_TEXT,
    nonce=_TEXT,
    action_url=_TEXT,
    expires_at=_TEXT,
)
def test_a_cached_confirm_page_is_what_jinja_renders_for_any_values(
    action, static_url, nonce, action_url, expires_at
):
    """Hostile and odd values are escaped exactly as Jinja's autoescape does."""
    renderer = PageRenderer()
    text = text_for(action)
    values = {
        "static_url": static_url,
        "nonce": nonce,
        "action_url": action_url,
        "expires_at": expires_at,
    }
    assert renderer.confirm_page(action, text, values) == _jinja(
        renderer, action, text, values
    )


def test_a_template_that_changes_a_value_is_rendered_every_time(tmp_path):
    """A custom page printing a value through a filter is never cut and filled."""
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "base.html").write_text("{% block content %}{% endblock %}")
    (pages / "confirm.html").write_text("x")
    (pages / "confirm-invite.html").write_text(
        '{% extends "pages/base.html" %}{% block content %}'
        "{{ nonce|upper }} {{ action_url }}{% if expires_at|length > 3 %}!{% endif %}"
        "{% endblock %}"
    )
    renderer = PageRenderer(tmp_path)
    text = text_for("invite")
    for nonce, expires in (("abc", "soon"), ("<b>", "x")):
        values = {
            "static_url": "/s",
            "nonce": nonce,
            "action_url": "/a/t",
            "expires_at": expires,
        }
        assert renderer.confirm_page("invite", text, values) == _jinja(
            renderer, "invite", text, values
        )
    assert renderer.confirm_page("invite", text, values) == "&lt;B&gt; /a/t"
    assert renderer._shapes["invite", text] is None  # refused: Jinja every time


def test_fixed_pages_are_rendered_once_per_context():
    """The success page is the same bytes for the same texts, and differs by them."""
    renderer = PageRenderer()
    context = {"static_url": "/static", "title": "T", "message": "<done>"}
    first = renderer.fixed_page("done", context)
    assert first == renderer.render("done", context)
    assert renderer.fixed_page("done", context) is first
    assert renderer.fixed_page("done", {**context, "static_url": "/x"}) != first


def test_templates_that_branch_on_or_transform_a_value_are_never_cut(tmp_path):
    """Found by an audit: conditions on a value's content passed the probes.

    A per-link value used in an ``if``, a filter or a test makes its template
    render every time; the built-in pages, which only print them, are cut.
    """
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "base.html").write_text("{% block content %}{% endblock %}")
    (pages / "confirm.html").write_text(
        '{% extends "pages/base.html" %}{% block content %}'
        "{{ nonce }} {{ action_url }} {{ expires_at }}{% endblock %}"
    )
    form = '<form action="{{ action_url }}"><input value="{{ nonce }}"></form>'
    overrides = {
        "invite": form + '{% if expires_at.endswith("UTC") %}soon{% endif %}',
        "email-confirm": form + '{% if action_url.startswith("/links/") %}h{% endif %}',
        "magic-signin": '<input value="{{ nonce|truncate(60) }}">',
        "unsubscribe": "{% set x = nonce %}{{ x }}",
    }
    for action, source in overrides.items():
        (pages / f"confirm-{action}.html").write_text(
            '{% extends "pages/base.html" %}{% block content %}'
            f"{source}{{% endblock %}}"
        )
    renderer = PageRenderer(tmp_path)
    real = {
        "static_url": "/links/static",
        "nonce": "gsOcA8LD-1xjJHvp-xaEAAg.axCJnQ." + "x" * 43,
        "action_url": "/links/a/eyJhbGciOi.eyJpc3Mi.GPde2MQ",
        "expires_at": "2026-12-03 21:11 UTC",
    }
    for action in [*overrides, "password-reset"]:
        text = text_for(action)
        page = renderer.confirm_page(action, text, real)
        assert page == _jinja(renderer, action, text, real)
        cut = renderer._shapes[action, text] is not None
        assert cut is (action == "password-reset"), action
    builtin = PageRenderer()
    builtin.confirm_page("invite", text_for("invite"), real)
    assert builtin._shapes["invite", text_for("invite")] is not None

"""What a posted confirmation form must hold before its link is consumed.

:class:`FormAdmission` is handed to :meth:`ActionRegistry.redeem
<actionlinks.registry.ActionRegistry.redeem>` as ``admit``: the registry calls
it with the link's verified claims, after the signature, lifetime and purpose
checks and before the consume, so that each link is verified once per request
and a refused form leaves the link as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionlinks.errors import RequestError
from actionlinks.web.pages import check_form, text_for

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from actionlinks.actions import Action
    from actionlinks.tokens import ActionClaims

ONE_CLICK = ("List-Unsubscribe", "One-Click")
"""The body of an RFC 8058 one-click unsubscribe (no nonce, no fields)."""


class FormAdmission:
    """Admit a posted form for a verified link, or refuse it.

    Args:
        form: the posted fields.
        action: the declared action of a name.
        is_valid_nonce: whether a nonce was issued for a link id (and is fresh).

    Attributes:
        claims: the link's claims, once the registry verified it.
        one_click: the form is an RFC 8058 one-click unsubscribe.
        problem: why the fields were refused (the page shows it), if they were.
    """

    __slots__ = (
        "_action",
        "_form",
        "_is_valid_nonce",
        "claims",
        "one_click",
        "problem",
    )

    def __init__(
        self,
        form: Mapping[str, str],
        *,
        action: Callable[[str], Action],
        is_valid_nonce: Callable[[str, str], bool],
    ) -> None:
        """Hold the form until the registry has verified the link."""
        self._form = form
        self._action = action
        self._is_valid_nonce = is_valid_nonce
        self.claims: ActionClaims | None = None
        self.one_click = False
        self.problem: str | None = None

    def __repr__(self) -> str:
        """Name the fields, never their values (a nonce is a credential)."""
        return f"FormAdmission(fields={sorted(self._form)!r})"

    def __call__(self, claims: ActionClaims) -> Mapping[str, str]:
        """The fields the handler gets.

        Raises:
            RequestError: 403 ``invalid_form`` without a valid nonce; 422
                ``invalid_form`` when the fields are incomplete (``problem``).
        """
        self.claims = claims
        action = self._action(claims.action)
        if action.one_click and self._form.get(ONE_CLICK[0]) == ONE_CLICK[1]:
            self.one_click = True
            return {}
        if not self._is_valid_nonce(self._form.get("nonce", ""), claims.token_id):
            raise RequestError("no valid form nonce", status=403, code="invalid_form")
        checked = check_form(text_for(action.name), self._form)
        if isinstance(checked, str):
            self.problem = checked
            raise RequestError(checked, status=422, code="invalid_form")
        return checked

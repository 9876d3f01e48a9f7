"""The one-time-use ledger: atomic consumption, release, and revocation.

A :class:`Ledger` records which token ids were used or revoked, and which
subjects had all their earlier tokens revoked. ``consume`` is a single atomic
check-and-set, so exactly one of any number of concurrent calls for one token
id returns ``True``. A store failure raises
:class:`~actionlinks.errors.LedgerUnavailableError`, never "unused".

A use may be *held*: taken for a holder until an instant, then ``confirm``-ed
(it stays used) or ``release``-d (the token is usable again). A hold that is
neither by its deadline — the process died while the handler ran — lapses, and
the token can be consumed again: a crash never leaves a link spent with nothing
done.

Instants are compared to the microsecond: a token issued before a revocation
of its subject is revoked, one issued after it is not, at any spacing.

Backends: :class:`MemoryLedger` here (one process, for tests), and
:class:`actionlinks.stores.sqlite_ledger.SqliteLedger`, the embedded default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

if TYPE_CHECKING:
    from datetime import datetime

    from actionlinks.clock import Clock

UseState: TypeAlias = Literal["used", "held", "revoked"]
PURGE_EVERY = timedelta(minutes=1)
"""How often backends sweep expired entries (not on every call: it scans)."""
ALL_ACTIONS = ""
"""The action key of a revocation that covers every action of a subject."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """A provisional use: who holds it, and until when at the latest."""

    holder: str
    until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """Whose link a token is: what a revocation of a subject's links covers."""

    subject: str
    action: str
    issued_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    """What the ledger knows about one token id.

    ``state`` is ``held`` while a use is being made (its handler runs).
    """

    token_id: str
    state: UseState
    at: datetime
    expires_at: datetime


class Ledger(Protocol):
    """Where one-time uses and revocations are recorded."""

    async def consume(
        self,
        token_id: str,
        *,
        expires_at: datetime,
        hold: Hold | None = None,
        issue: Issue | None = None,
    ) -> bool:
        """Atomically mark ``token_id`` used; ``True`` only for the first caller.

        A revoked token id cannot be consumed; one whose hold lapsed can. With
        ``hold``, the use is provisional until :meth:`confirm`. With ``issue``,
        a revocation of the subject's links that covers it (see
        :meth:`is_subject_revoked`) refuses the consume in the same atomic
        step, so no revocation slips in between a check and the use. The entry
        may be purged after ``expires_at``.
        """
        ...

    async def confirm(self, token_id: str, *, holder: str) -> None:
        """Make ``holder``'s held use of ``token_id`` final."""
        ...

    async def extend(self, token_id: str, *, hold: Hold) -> bool:
        """Move the deadline of ``hold.holder``'s hold; whether it still held it."""
        ...

    async def release(self, token_id: str, *, holder: str | None = None) -> None:
        """Undo a use (``holder``'s hold, or a final use when ``None``).

        Never undoes a revocation: a token revoked while its use was pending
        becomes revoked, not usable again.
        """
        ...

    async def lookup(self, token_id: str) -> LedgerEntry | None:
        """The entry for ``token_id``, if it was used or revoked."""
        ...

    async def revoke(self, token_id: str, *, expires_at: datetime) -> None:
        """Revoke one token id.

        A used one stays recorded as used, and stays revoked if its use is
        released afterwards.
        """
        ...

    async def revoke_subject(
        self, subject: str, *, action: str, before: datetime, until: datetime
    ) -> None:
        """Revoke the tokens of ``subject`` issued before ``before``.

        Args:
            subject: whose tokens.
            action: one action's name, or :data:`ALL_ACTIONS`.
            before: tokens issued earlier than this instant are revoked.
            until: when the record may be purged (no earlier token outlives it).
        """
        ...

    async def is_subject_revoked(
        self, subject: str, *, action: str, issued_at: datetime
    ) -> bool:
        """Whether a token of ``subject`` for ``action`` issued then is revoked."""
        ...

    async def standing(
        self, token_id: str, *, subject: str, action: str, issued_at: datetime
    ) -> LedgerEntry | None:
        """What stands against a token, in one round trip.

        Its own use or revocation, else a revocation of its subject (as a
        ``revoked`` entry).
        """
        ...


class MemoryLedger:
    """A ledger in this process's memory, for tests and single-process use."""

    __slots__ = (
        "_clock",
        "_entries",
        "_holds",
        "_last_purge",
        "_revocations",
        "_revoked_in_use",
    )

    def __init__(self, *, clock: Clock) -> None:
        """Start empty; ``clock`` stamps uses and drives purging."""
        self._clock = clock
        self._last_purge = clock.now()
        self._entries: dict[str, LedgerEntry] = {}
        self._holds: dict[str, Hold] = {}
        # Revocations that arrived while the token's use was pending: a release
        # turns the use into this revocation instead of forgetting it.
        self._revoked_in_use: dict[str, datetime] = {}
        self._revocations: dict[tuple[str, str], tuple[datetime, datetime]] = {}

    def __repr__(self) -> str:
        """Count the entries."""
        return f"MemoryLedger(entries={len(self._entries)})"

    def _purge(self) -> None:
        now = self._clock.now()
        if now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        for token_id in [k for k, v in self._entries.items() if v.expires_at < now]:
            del self._entries[token_id]
            self._holds.pop(token_id, None)
            self._revoked_in_use.pop(token_id, None)
        for key in [k for k, (_, until) in self._revocations.items() if until < now]:
            del self._revocations[key]

    def _current(self, token_id: str) -> LedgerEntry | None:
        """The entry as it stands now: a lapsed hold is no use at all."""
        entry = self._entries.get(token_id)
        hold = self._holds.get(token_id)
        if entry is None or hold is None:
            return entry
        if hold.until > self._clock.now():
            return replace(entry, state="held")
        revoked_at = self._revoked_in_use.get(token_id)
        if revoked_at is None:
            return None
        return replace(entry, state="revoked", at=revoked_at)

    async def consume(
        self,
        token_id: str,
        *,
        expires_at: datetime,
        hold: Hold | None = None,
        issue: Issue | None = None,
    ) -> bool:
        """Mark ``token_id`` used; ``True`` only the first time (or after a lapse)."""
        self._purge()
        if self._current(token_id) is not None:
            return False
        if issue is not None and self._subject_revocation(
            issue.subject, issue.action, issue.issued_at
        ):
            return False
        self._revoked_in_use.pop(token_id, None)
        self._entries[token_id] = LedgerEntry(
            token_id=token_id, state="used", at=self._clock.now(), expires_at=expires_at
        )
        if hold is None:
            self._holds.pop(token_id, None)
        else:
            self._holds[token_id] = hold
        return True

    async def confirm(self, token_id: str, *, holder: str) -> None:
        """Make ``holder``'s held use final."""
        hold = self._holds.get(token_id)
        if hold is not None and hold.holder == holder:
            del self._holds[token_id]

    async def extend(self, token_id: str, *, hold: Hold) -> bool:
        """Move the deadline of ``hold.holder``'s hold."""
        current = self._holds.get(token_id)
        if current is None or current.holder != hold.holder:
            return False
        self._holds[token_id] = hold
        return True

    async def release(self, token_id: str, *, holder: str | None = None) -> None:
        """Forget a use, or turn it into the revocation that came meanwhile."""
        entry = self._entries.get(token_id)
        hold = self._holds.get(token_id)
        if entry is None or entry.state != "used":
            return
        if (hold.holder if hold is not None else None) != holder:
            return
        self._holds.pop(token_id, None)
        revoked_at = self._revoked_in_use.pop(token_id, None)
        if revoked_at is None:
            del self._entries[token_id]
        else:
            self._entries[token_id] = replace(entry, state="revoked", at=revoked_at)

    async def lookup(self, token_id: str) -> LedgerEntry | None:
        """The entry for ``token_id``, if any."""
        return self._current(token_id)

    async def revoke(self, token_id: str, *, expires_at: datetime) -> None:
        """Revoke ``token_id``; a used one stays used, and revoked if released."""
        now = self._clock.now()
        entry = self._entries.get(token_id)
        if entry is None:
            self._entries[token_id] = LedgerEntry(
                token_id=token_id, state="revoked", at=now, expires_at=expires_at
            )
        elif entry.state == "used":
            self._revoked_in_use.setdefault(token_id, now)

    async def revoke_subject(
        self, subject: str, *, action: str, before: datetime, until: datetime
    ) -> None:
        """Revoke the subject's tokens issued before ``before``."""
        old = self._revocations.get((subject, action))
        if old is not None:
            before, until = max(before, old[0]), max(until, old[1])
        self._revocations[subject, action] = (before, until)

    async def is_subject_revoked(
        self, subject: str, *, action: str, issued_at: datetime
    ) -> bool:
        """Whether a revocation of the subject covers this token."""
        return self._subject_revocation(subject, action, issued_at) is not None

    def _subject_revocation(
        self, subject: str, action: str, issued_at: datetime
    ) -> datetime | None:
        for key in ((subject, action), (subject, ALL_ACTIONS)):
            found = self._revocations.get(key)
            if found is not None and issued_at < found[0]:
                return found[0]
        return None

    async def standing(
        self, token_id: str, *, subject: str, action: str, issued_at: datetime
    ) -> LedgerEntry | None:
        """The token's own entry, else its subject's revocation."""
        entry = self._current(token_id)
        if entry is not None:
            return entry
        revoked = self._subject_revocation(subject, action, issued_at)
        if revoked is None:
            return None
        return LedgerEntry(
            token_id=token_id, state="revoked", at=revoked, expires_at=revoked
        )

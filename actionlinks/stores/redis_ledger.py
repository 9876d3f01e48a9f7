"""The one-time ledger on Redis (``ACTIONLINKS_LEDGER_URL=redis://…``).

Every operation is one Lua script, so it is atomic on the server however many
service processes call it: ``consume`` is a check-and-set of the token's hash
(a use, a hold with its holder and deadline, a revocation that arrived while
the use was pending), and a subject's revocation is one hash per subject and
action. Instants come from the service's clock (passed to the script, to the
microsecond); each key expires on the server with the token's remaining
lifetime, and a key whose lifetime is over by the clock counts as gone. A
Redis failure is :class:`~actionlinks.errors.LedgerUnavailableError`, never
"unused".
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from actionlinks.errors import LedgerUnavailableError
from actionlinks.ledger import ALL_ACTIONS, LedgerEntry
from actionlinks.stores.rows import instant, micros

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    import redis.asyncio

    from actionlinks.clock import Clock
    from actionlinks.ledger import Hold, Issue

_MARGIN_MS = 60_000
"""Keys outlive their lifetime on the server by this much (clocks drift)."""

# KEYS[1] the token's hash; ARGV[1] now (µs). Returns nil, or {state, at, exp}.
_CURRENT = """
local function current(key, now)
  local e = redis.call('HMGET', key, 'state', 'at', 'exp', 'holder', 'until', 'rin')
  if not e[1] then return nil end
  if tonumber(e[3]) < now then
    redis.call('DEL', key)
    return nil
  end
  if e[1] == 'used' and e[4] and e[4] ~= '' then
    if tonumber(e[5]) > now then return {'held', e[2], e[3]} end
    if e[6] and e[6] ~= '' then return {'revoked', e[6], e[3]} end
    return nil
  end
  return {e[1], e[2], e[3]}
end
"""

# KEYS: the token's hash, then the subject's two revocation hashes (or '').
_CONSUME = (
    _CURRENT
    + """
local now = tonumber(ARGV[1])
if current(KEYS[1], now) then return 0 end
for i = 2, 3 do
  if KEYS[i] ~= '' then
    local e = redis.call('HMGET', KEYS[i], 'before', 'until')
    if e[1] and tonumber(e[2]) >= now and tonumber(ARGV[6]) < tonumber(e[1]) then
      return 0
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'used', 'at', ARGV[1], 'exp', ARGV[2],
           'holder', ARGV[3], 'until', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""
)

_CONFIRM = """
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder and holder ~= '' and holder == ARGV[1] then
  redis.call('HSET', KEYS[1], 'holder', '', 'until', '0')
end
return 0
"""

_EXTEND = """
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder and holder ~= '' and holder == ARGV[1] then
  redis.call('HSET', KEYS[1], 'until', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
local e = redis.call('HMGET', KEYS[1], 'state', 'holder', 'rin')
if e[1] ~= 'used' then return 0 end
if (e[2] or '') ~= ARGV[1] then return 0 end
if e[3] and e[3] ~= '' then
  redis.call('HSET', KEYS[1], 'state', 'revoked', 'at', e[3], 'holder', '',
             'until', '0', 'rin', '')
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

_LOOKUP = (
    _CURRENT
    + """
return current(KEYS[1], tonumber(ARGV[1]))
"""
)

_REVOKE = """
local now = tonumber(ARGV[1])
local e = redis.call('HMGET', KEYS[1], 'state', 'exp', 'rin')
if e[1] and tonumber(e[2]) < now then
  redis.call('DEL', KEYS[1])
  e[1] = false
end
if not e[1] then
  redis.call('HSET', KEYS[1], 'state', 'revoked', 'at', ARGV[1], 'exp', ARGV[2],
             'holder', '', 'until', '0')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif e[1] == 'used' and (not e[3] or e[3] == '') then
  redis.call('HSET', KEYS[1], 'rin', ARGV[1])
end
return 0
"""

_REVOKE_SUBJECT = """
local now = tonumber(ARGV[1])
local before, untl = tonumber(ARGV[2]), tonumber(ARGV[3])
local e = redis.call('HMGET', KEYS[1], 'before', 'until')
if e[1] and tonumber(e[2]) >= now then
  before = math.max(before, tonumber(e[1]))
  untl = math.max(untl, tonumber(e[2]))
end
redis.call('HSET', KEYS[1], 'before', string.format('%d', before),
           'until', string.format('%d', untl))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.floor((untl - now) / 1000)) + ARGV[4])
return 0
"""

# KEYS: the token's hash (or ''), then the subject's two revocation hashes.
_STANDING = (
    _CURRENT
    + """
local now, issued = tonumber(ARGV[1]), tonumber(ARGV[2])
if KEYS[1] ~= '' then
  local own = current(KEYS[1], now)
  if own then return own end
end
for i = 2, 3 do
  local e = redis.call('HMGET', KEYS[i], 'before', 'until')
  if e[1] and tonumber(e[2]) >= now and issued < tonumber(e[1]) then
    return {'subject', e[1], e[1]}
  end
end
return nil
"""
)


class RedisLedger:
    """The ledger on a Redis server, shared by every service process.

    Args:
        client: an asyncio Redis client (the service makes it from the URL).
        clock: stamps uses and decides what has expired.
        prefix: the namespace of every key.
    """

    __slots__ = ("_client", "_clock", "_prefix", "_scripts")

    def __init__(
        self, client: redis.asyncio.Redis, *, clock: Clock, prefix: str = "al:"
    ) -> None:
        """Register the scripts; connect nothing yet."""
        self._client = client
        self._clock = clock
        self._prefix = prefix
        self._scripts = {
            name: client.register_script(source)
            for name, source in (
                ("consume", _CONSUME),
                ("confirm", _CONFIRM),
                ("extend", _EXTEND),
                ("release", _RELEASE),
                ("lookup", _LOOKUP),
                ("revoke", _REVOKE),
                ("revoke_subject", _REVOKE_SUBJECT),
                ("standing", _STANDING),
            )
        }

    def __repr__(self) -> str:
        """Name the namespace, never the server's password."""
        return f"RedisLedger(prefix={self._prefix!r})"

    def _token(self, token_id: str) -> str:
        return f"{self._prefix}t:{token_id}"

    def _subject(self, subject: str, action: str) -> str:
        # The subject's length first: no subject and action can forge another's.
        return f"{self._prefix}s:{len(subject)}:{subject}:{action}"

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:  # noqa: ANN401 - a script's reply
        try:
            return await self._scripts[name](keys=list(keys), args=list(args))
        except RedisError as exc:
            raise LedgerUnavailableError(f"the Redis ledger failed: {exc}") from exc

    def _lifetime_ms(self, expires_at: datetime) -> int:
        remaining = (expires_at - self._clock.now()) // timedelta(milliseconds=1)
        return max(1, int(remaining)) + _MARGIN_MS

    def _entry(self, token_id: str, found: Any) -> LedgerEntry | None:  # noqa: ANN401 - a script's reply
        if found is None:
            return None
        state, at, expires = (
            v.decode() if isinstance(v, bytes) else str(v) for v in found
        )
        return LedgerEntry(
            token_id=token_id,
            state="revoked" if state == "subject" else state,  # type: ignore[arg-type]
            at=instant(int(at)),
            expires_at=instant(int(expires)),
        )

    async def consume(
        self,
        token_id: str,
        *,
        expires_at: datetime,
        hold: Hold | None = None,
        issue: Issue | None = None,
    ) -> bool:
        """Mark ``token_id`` used; ``True`` only the first time (or after a lapse)."""
        subjects = (
            ["", ""]
            if issue is None
            else [
                self._subject(issue.subject, issue.action),
                self._subject(issue.subject, ALL_ACTIONS),
            ]
        )
        taken = await self._run(
            "consume",
            [self._token(token_id), *subjects],
            [
                micros(self._clock.now()),
                micros(expires_at),
                "" if hold is None else hold.holder,
                0 if hold is None else micros(hold.until),
                self._lifetime_ms(expires_at),
                0 if issue is None else micros(issue.issued_at),
            ],
        )
        return bool(taken)

    async def confirm(self, token_id: str, *, holder: str) -> None:
        """Make ``holder``'s held use final."""
        await self._run("confirm", [self._token(token_id)], [holder])

    async def extend(self, token_id: str, *, hold: Hold) -> bool:
        """Move the deadline of ``hold.holder``'s hold."""
        moved = await self._run(
            "extend", [self._token(token_id)], [hold.holder, micros(hold.until)]
        )
        return bool(moved)

    async def release(self, token_id: str, *, holder: str | None = None) -> None:
        """Forget a use, or turn it into the revocation that came meanwhile."""
        await self._run("release", [self._token(token_id)], [holder or ""])

    async def lookup(self, token_id: str) -> LedgerEntry | None:
        """The entry for ``token_id``, if any."""
        found = await self._run(
            "lookup", [self._token(token_id)], [micros(self._clock.now())]
        )
        return self._entry(token_id, found)

    async def revoke(self, token_id: str, *, expires_at: datetime) -> None:
        """Revoke ``token_id``; a used one stays used, and revoked if released."""
        await self._run(
            "revoke",
            [self._token(token_id)],
            [
                micros(self._clock.now()),
                micros(expires_at),
                self._lifetime_ms(expires_at),
            ],
        )

    async def revoke_subject(
        self, subject: str, *, action: str, before: datetime, until: datetime
    ) -> None:
        """Revoke the subject's tokens issued before ``before``."""
        await self._run(
            "revoke_subject",
            [self._subject(subject, action)],
            [micros(self._clock.now()), micros(before), micros(until), _MARGIN_MS],
        )

    async def is_subject_revoked(
        self, subject: str, *, action: str, issued_at: datetime
    ) -> bool:
        """Whether a revocation of the subject covers this token."""
        found = await self._standing("", subject, action, issued_at)
        return found is not None

    async def standing(
        self, token_id: str, *, subject: str, action: str, issued_at: datetime
    ) -> LedgerEntry | None:
        """The token's own entry, else its subject's revocation."""
        found = await self._standing(self._token(token_id), subject, action, issued_at)
        return self._entry(token_id, found)

    async def _standing(
        self, token_key: str, subject: str, action: str, issued_at: datetime
    ) -> Any:  # noqa: ANN401 - a script's reply
        return await self._run(
            "standing",
            [
                token_key,
                self._subject(subject, action),
                self._subject(subject, ALL_ACTIONS),
            ],
            [micros(self._clock.now()), micros(issued_at)],
        )

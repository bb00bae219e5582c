"""Rate limiting (SPEC section 7): every matching policy checked in ONE Redis round trip.

One Lua script evaluates all policies against Redis' own clock (`TIME`) and records the
request only if every policy admits it, so rejected requests consume no quota and N
instances sharing Redis admit exactly N. Two algorithms: a sliding-window log (exact:
never more than `limit` in any `window`, so no 2x burst at a window edge) and GCRA with
burst. The same algorithms run in process when Redis is not configured, and take over
for fail-open policies while Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings

from proxy.exchange import Exchange, Rejection
from proxy.quotas import QUOTA, QuotaBook, threshold_events
from proxy.redis_pipe import key_slot, script_sha
from proxy.snapshot import RatePolicyEntry

__all__ = [
    "InProcessLimiter",
    "LUA_SCRIPT",
    "UNDO_SCRIPT",
    "PolicyCheck",
    "RateLimiter",
    "rate_limit_headers",
]

logger = logging.getLogger("gateway.ratelimit")

SLIDING = "sliding_window"
GCRA = "gcra"
_REDIS_BACKOFF_SECONDS = 1.0
_LOCAL_PRUNE_SECONDS = 60.0
# Kong's period names for windows of exactly one unit (X-RateLimit-Limit-Minute, ...).
_PERIOD_NAMES = {1: "Second", 60: "Minute", 3600: "Hour", 86400: "Day", 2592000: "Month"}
_SCRIPT_ALGORITHMS = {SLIDING: b"s", GCRA: b"g", QUOTA: b"q"}

LUA_SCRIPT = """
-- KEYS: one per policy. ARGV[1]: a unique member for this request; then per policy
-- four values: algorithm ('s' sliding log, 'g' GCRA, 'q' quota), limit, window in ms
-- (a quota: the epoch ms at which its period resets), burst.
-- Returns {admitted, then per policy: ok, remaining, reset_ms, retry_ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local results = {}
local admitted = 1
local plans = {}
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local algorithm = ARGV[base]
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local burst = tonumber(ARGV[base + 3])
  local ok, remaining, reset, retry = 1, 0, 0, 0
  if algorithm == 's' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
    local count = redis.call('ZCARD', KEYS[i])
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local expires = window
    if oldest[2] then expires = tonumber(oldest[2]) + window - now end
    if count < limit then
      remaining = limit - count - 1
      reset = expires
      if count == 0 then reset = window end
    else
      ok = 0
      retry = expires
      reset = expires
    end
  elseif algorithm == 'q' then
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    reset = window - now
    if used < limit then
      remaining = limit - used - 1
    else
      ok = 0
      retry = reset
    end
  else
    local interval = window / limit
    local capacity = burst > 0 and burst or limit
    local tolerance = interval * (capacity - 1)
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local allowance = now + tolerance - tat
    if allowance < 0 then
      ok = 0
      retry = -allowance
      reset = tat - now
    else
      remaining = math.floor(allowance / interval)
      reset = tat + interval - now
      plans[i] = tat + interval
    end
  end
  if ok == 0 then admitted = 0 end
  results[#results + 1] = ok
  results[#results + 1] = remaining
  results[#results + 1] = math.ceil(reset)
  results[#results + 1] = math.ceil(retry)
end
if admitted == 1 then
  for i = 1, #KEYS do
    local base = 2 + (i - 1) * 4
    local window = tonumber(ARGV[base + 2])
    if ARGV[base] == 's' then
      redis.call('ZADD', KEYS[i], now, member)
      redis.call('PEXPIRE', KEYS[i], window)
    elseif ARGV[base] == 'q' then
      redis.call('INCR', KEYS[i])
      redis.call('PEXPIREAT', KEYS[i], window + 86400000)
    else
      redis.call('SET', KEYS[i], plans[i], 'PX', math.ceil(plans[i] - now) + window)
    end
  end
end
table.insert(results, 1, admitted)
return results
"""


UNDO_SCRIPT = """
-- Takes back one request's records (Cluster: another slot refused it). KEYS: one per
-- policy. ARGV[1]: the request's member; then per policy: algorithm, GCRA interval in ms.
for i = 1, #KEYS do
  local algorithm = ARGV[2 + (i - 1) * 2]
  if algorithm == 's' then
    redis.call('ZREM', KEYS[i], ARGV[1])
  elseif algorithm == 'q' then
    redis.call('DECR', KEYS[i])
  else
    local tat = tonumber(redis.call('GET', KEYS[i]))
    if tat then redis.call('SET', KEYS[i], tat - tonumber(ARGV[3 + (i - 1) * 2]), 'KEEPTTL') end
  end
end
return 1
"""


@dataclass(slots=True)
class PolicyCheck:
    """One policy's verdict for one request; times in milliseconds."""

    policy: RatePolicyEntry
    ok: bool
    remaining: int
    reset_ms: int
    retry_ms: int


class InProcessLimiter:
    """The Lua script's algorithms in Python: the embedded default and the fail-open fallback."""

    def __init__(self) -> None:
        self._logs: dict[str, deque[float]] = {}
        self._tats: dict[str, float] = {}
        self._counts: dict[str, list] = {}  # quota key -> [used, resets_at ms]
        self._next_prune = 0.0

    def check(self, keyed: list[tuple[str, RatePolicyEntry]]) -> list[PolicyCheck]:
        now = time.time() * 1000
        if now >= self._next_prune:
            self._prune(now)
        checks = [self._evaluate(key, policy, now) for key, policy in keyed]
        if all(check.ok for check in checks):
            for (key, policy), _check in zip(keyed, checks, strict=True):
                self._record(key, policy, now)
        return checks

    def _evaluate(self, key: str, policy: RatePolicyEntry, now: float) -> PolicyCheck:
        if policy.algorithm == QUOTA:
            return self._evaluate_quota(key, policy, now)
        window = policy.window_seconds * 1000
        if policy.algorithm != GCRA:
            log = self._logs.setdefault(key, deque())
            while log and log[0] <= now - window:
                log.popleft()
            expires = (log[0] + window - now) if log else window
            if len(log) < policy.limit:
                return PolicyCheck(policy, True, policy.limit - len(log) - 1, math.ceil(expires), 0)
            return PolicyCheck(policy, False, 0, math.ceil(expires), math.ceil(expires))
        interval = window / policy.limit
        capacity = policy.burst or policy.limit
        tat = max(self._tats.get(key, now), now)
        allowance = now + interval * (capacity - 1) - tat
        if allowance < 0:
            return PolicyCheck(policy, False, 0, math.ceil(tat - now), math.ceil(-allowance))
        return PolicyCheck(policy, True, int(allowance // interval), math.ceil(tat + interval - now), 0)

    def _evaluate_quota(self, key: str, policy: RatePolicyEntry, now: float) -> PolicyCheck:
        used = self._counts.get(key, (0,))[0]
        reset = math.ceil(policy.resets_at * 1000 - now)
        if used < policy.limit:
            return PolicyCheck(policy, True, policy.limit - used - 1, reset, 0)
        return PolicyCheck(policy, False, 0, reset, reset)

    def _record(self, key: str, policy: RatePolicyEntry, now: float) -> None:
        if policy.algorithm == QUOTA:
            self._counts.setdefault(key, [0, policy.resets_at * 1000])[0] += 1
        elif policy.algorithm != GCRA:
            self._logs[key].append(now)
        else:
            interval = policy.window_seconds * 1000 / policy.limit
            self._tats[key] = max(self._tats.get(key, now), now) + interval

    def _prune(self, now: float) -> None:
        self._next_prune = now + _LOCAL_PRUNE_SECONDS * 1000
        self._logs = {k: log for k, log in self._logs.items() if log and log[-1] > now - 31 * 86400 * 1000}
        self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
        self._counts = {k: count for k, count in self._counts.items() if count[1] > now}


def _default_policy() -> RatePolicyEntry | None:
    """RATE_LIMIT_DEFAULT ("300/60"): applies when no database policy matches; "" disables it."""
    spec = settings.RATE_LIMIT_DEFAULT.strip()
    if not spec:
        return None
    limit, _, window = spec.partition("/")
    return RatePolicyEntry(
        name="default",
        scope="user",
        service_id=None,
        methods=frozenset(),
        role="",
        plan="",
        limit=int(limit),
        window_seconds=int(window or 60),
        burst=0,
        algorithm=SLIDING,
        fail_mode=settings.RATE_LIMIT_FAIL_MODE,
    )


class RateLimiter:
    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.local = InProcessLimiter()
        self.default_policy = _default_policy()
        self._pipe = runtime.redis_pipe
        self._sha = script_sha(LUA_SCRIPT)
        self._undo_sha = script_sha(UNDO_SCRIPT)
        self._cluster = getattr(self._pipe, "cluster", False)
        self._redis_down_until = 0.0
        self._incident_logged = False
        self._matching_cache: dict = {}
        self._encoded_args: dict[RatePolicyEntry, list[bytes]] = {}
        self._matching_snapshot = None
        self._member_prefix = os.urandom(6).hex()
        self._member_counter = 0
        self.quotas = QuotaBook(settings.RATE_LIMIT_FAIL_MODE)

    # --- which policies, which keys --------------------------------------------------------

    def _policies_for(self, exchange: Exchange) -> tuple[RatePolicyEntry, ...]:
        snapshot = self.runtime.snapshot
        if self._matching_snapshot is not snapshot:
            self._matching_cache = {}
            self._encoded_args = {}
            self._matching_snapshot = snapshot
        identity = exchange.identity
        roles = identity.roles if identity is not None else frozenset()
        tenant = snapshot.tenants.get(identity.tenant) if identity is not None and identity.tenant else None
        plan = tenant.plan if tenant is not None else ""
        # The subscription's plan (SPEC 20): its default policies apply to its tenants only.
        quota_plan = tenant.quota.plan if tenant is not None and tenant.quota is not None else ""
        cache_key = (exchange.service.id, exchange.method, roles, plan, quota_plan)
        policies = self._matching_cache.get(cache_key)
        if policies is None:
            policies = tuple(
                p
                for p in snapshot.rate_policies
                if (p.service_id is None or p.service_id == exchange.service.id)
                and (not p.methods or exchange.method in p.methods)
                and (not p.role or p.role in roles)
                and (not p.plan or p.plan == plan)
                and (not p.plans or quota_plan in p.plans)
            )
            if not policies and self.default_policy is not None:
                policies = (self.default_policy,)
            self._matching_cache[cache_key] = policies
        return policies

    @staticmethod
    def _subject(policy: RatePolicyEntry, exchange: Exchange) -> str:
        """Unauthenticated requests fall back to the client IP (SPEC section 7)."""
        identity = exchange.identity
        scope = policy.scope
        if scope == "global":
            return "global"
        if scope == "ip" or identity is None:
            return f"ip:{exchange.client_ip}"
        if scope == "tenant" and identity.tenant:
            return f"tenant:{identity.tenant}"
        return identity.rate_key

    def _tagged_key(self, prefix: str, policy: RatePolicyEntry, exchange: Exchange) -> str:
        """On a Cluster, a {hash tag} keeps a request's usual keys in one slot: a user's and
        their tenant's keys share the tenant's tag; ip and global keys carry their own."""
        subject = self._subject(policy, exchange)
        identity = exchange.identity
        tag = subject
        if identity is not None and identity.tenant and not subject.startswith(("ip:", "global")):
            tag = f"tenant:{identity.tenant}"
        return f"{prefix}:rl:{{{tag}}}:{policy.name}:{subject}"

    # --- enforcement -------------------------------------------------------------------------

    def enforce(self, exchange: Exchange):
        policies = self._policies_for(exchange)
        prefix = settings.CACHE_KEY_PREFIX
        quotas = self._quotas_for(exchange, prefix)
        if not policies and not quotas:
            return None
        if self._cluster:
            keyed = [(self._tagged_key(prefix, p, exchange), p) for p in policies]
        else:
            keyed = [(f"{prefix}:rl:{p.name}:{self._subject(p, exchange)}", p) for p in policies]
        keyed += quotas
        if self._pipe is None:
            self._apply(exchange, self.local.check(keyed))
            return None
        if time.monotonic() < self._redis_down_until:
            self._apply(exchange, self._fallback(keyed))
            return None
        return self._enforce_in_redis(exchange, keyed)

    def _quotas_for(self, exchange: Exchange, prefix: str) -> tuple:
        identity = exchange.identity
        if identity is None or not identity.tenant:
            return ()
        snapshot = self.runtime.snapshot
        return self.quotas.keyed(snapshot, snapshot.tenants.get(identity.tenant), exchange.service, prefix)

    async def _enforce_in_redis(self, exchange: Exchange, keyed) -> None:
        self._member_counter += 1
        args = [f"{self._member_prefix}{self._member_counter}"]
        for _, policy in keyed:
            args += self._script_args(policy)
        try:
            if self._cluster:
                checks = await self._checks_on_cluster(keyed, args[0])
            else:
                reply = await self._pipe.evalsha(LUA_SCRIPT, self._sha, [key for key, _ in keyed], args)
                checks = _checks_from_reply(keyed, reply)
        except Exception as exc:
            self._redis_failed(exc)
            self._apply(exchange, self._fallback(keyed))
            return
        if self._incident_logged:
            logger.warning("rate-limit backend recovered; shared limits resume")
            self._incident_logged = False
        self._apply(exchange, checks)

    async def _checks_on_cluster(self, keyed, member: str) -> list[PolicyCheck]:
        """One script per slot, all sent at once (one round trip per shard touched, in
        parallel). Each key stays exact; if one slot admitted and another refused, the
        admitted slots' records are taken back so a refused request consumes no quota."""
        groups: dict[int, list[int]] = {}
        for index, (key, _) in enumerate(keyed):
            groups.setdefault(key_slot(key), []).append(index)
        ordered = list(groups.values())
        replies = await asyncio.gather(*(self._evaluate_group(keyed, indexes, member) for indexes in ordered))
        checks: list[PolicyCheck | None] = [None] * len(keyed)
        for indexes, reply in zip(ordered, replies, strict=True):
            group_checks = _checks_from_reply([keyed[i] for i in indexes], reply)
            for index, check in zip(indexes, group_checks, strict=True):
                checks[index] = check
        admitted = [bool(reply[0]) for reply in replies]
        if not all(admitted) and any(admitted):
            undo = [indexes for indexes, ok in zip(ordered, admitted, strict=True) if ok]
            await asyncio.gather(*(self._undo_group(keyed, indexes, member) for indexes in undo))
        return checks

    def _evaluate_group(self, keyed, indexes: list[int], member: str):
        args = [member]
        for index in indexes:
            args += self._script_args(keyed[index][1])
        return self._pipe.evalsha(LUA_SCRIPT, self._sha, [keyed[i][0] for i in indexes], args)

    def _undo_group(self, keyed, indexes: list[int], member: str):
        args = [member]
        for index in indexes:
            policy = keyed[index][1]
            args += [self._script_args(policy)[0], str(policy.window_seconds * 1000 / policy.limit).encode()]
        return self._pipe.evalsha(UNDO_SCRIPT, self._undo_sha, [keyed[i][0] for i in indexes], args)

    def _script_args(self, policy: RatePolicyEntry) -> list[bytes]:
        """The script's four arguments for a policy, encoded once per snapshot."""
        encoded = self._encoded_args.get(policy)
        if encoded is None:
            algorithm = _SCRIPT_ALGORITHMS.get(policy.algorithm, b"s")
            window = policy.resets_at * 1000 if policy.algorithm == QUOTA else policy.window_seconds * 1000
            numbers = (policy.limit, window, policy.burst)
            encoded = self._encoded_args[policy] = [algorithm, *(str(n).encode() for n in numbers)]
        return encoded

    def _redis_failed(self, exc: Exception) -> None:
        self.runtime.metrics.rate_limit_backend_errors.inc()
        self._redis_down_until = time.monotonic() + _REDIS_BACKOFF_SECONDS
        if not self._incident_logged:
            logger.error("rate-limit backend unreachable; applying each policy's fail mode: %s", exc)
            self._incident_logged = True

    def _fallback(self, keyed) -> list[PolicyCheck]:
        """Fail-closed policies refuse with 503; fail-open ones use the in-process limiter."""
        if any(policy.fail_mode == "closed" for _, policy in keyed):
            self.runtime.metrics.rate_limit_backend_errors.inc()
            raise Rejection(
                "SERVICE_UNAVAILABLE",
                "Rate limiting is temporarily unavailable and this limit fails closed.",
                [(b"retry-after", b"1")],
            )
        return self.local.check(keyed)

    def _apply(self, exchange: Exchange, checks: list[PolicyCheck]) -> None:
        headers = rate_limit_headers(checks)
        exchange.response_headers += headers
        violated = [check for check in checks if not check.ok]
        if not violated:
            self._note_quota_thresholds(exchange, checks)
            return
        service = exchange.service.slug
        for check in violated:
            self.runtime.metrics.rate_limit_exceeded.labels(check.policy.name, service).inc()
        retry_after = max(1, math.ceil(max(check.retry_ms for check in violated) / 1000))
        names = [check.policy.name for check in violated]
        if any(check.policy.algorithm == QUOTA for check in violated):
            raise Rejection(
                "QUOTA_EXCEEDED",
                f"Quota used up ({', '.join(names)}); it resets in {retry_after} s.",
                [(b"retry-after", str(retry_after).encode())],
                violated_policies=names,
            )
        raise Rejection(
            "RATE_LIMIT",
            f"Rate limit exceeded ({', '.join(names)}); retry in {retry_after} s.",
            [(b"retry-after", str(retry_after).encode())],
            violated_policies=names,
        )

    def _note_quota_thresholds(self, exchange: Exchange, checks: list[PolicyCheck]) -> None:
        if exchange.identity is None or not exchange.identity.tenant:
            return
        for event in threshold_events(
            checks, exchange.identity.tenant, exchange.service.slug, self.quotas.period
        ):
            self.runtime.meter.note_quota(event)


def _checks_from_reply(keyed, reply) -> list[PolicyCheck]:
    return [
        PolicyCheck(
            policy,
            bool(reply[1 + i * 4]),
            int(reply[2 + i * 4]),
            int(reply[3 + i * 4]),
            int(reply[4 + i * 4]),
        )
        for i, (_, policy) in enumerate(keyed)
    ]


def rate_limit_headers(checks: list[PolicyCheck]) -> list[tuple[bytes, bytes]]:
    """IETF RateLimit / RateLimit-Policy (Structured Fields), X-RateLimit-* and Kong's per-period."""
    policy_items = []
    limit_items = []
    most_restrictive = None
    per_period: dict[str, PolicyCheck] = {}
    for check in checks:
        policy = check.policy
        reset = math.ceil(check.reset_ms / 1000)
        policy_items.append(f'"{policy.name}";q={policy.limit};w={policy.window_seconds}')
        limit_items.append(f'"{policy.name}";r={check.remaining};t={reset}')
        if most_restrictive is None or (check.remaining, policy.limit) < (
            most_restrictive.remaining,
            most_restrictive.policy.limit,
        ):
            most_restrictive = check
        period = _PERIOD_NAMES.get(policy.window_seconds)
        if period and (period not in per_period or check.remaining < per_period[period].remaining):
            per_period[period] = check
    headers = [
        (b"ratelimit-policy", ", ".join(policy_items).encode()),
        (b"ratelimit", ", ".join(limit_items).encode()),
        (b"x-ratelimit-limit", str(most_restrictive.policy.limit).encode()),
        (b"x-ratelimit-remaining", str(most_restrictive.remaining).encode()),
        (b"x-ratelimit-reset", str(math.ceil(most_restrictive.reset_ms / 1000)).encode()),
    ]
    for period, check in per_period.items():
        headers.append((f"x-ratelimit-limit-{period.lower()}".encode(), str(check.policy.limit).encode()))
        headers.append((f"x-ratelimit-remaining-{period.lower()}".encode(), str(check.remaining).encode()))
    return headers

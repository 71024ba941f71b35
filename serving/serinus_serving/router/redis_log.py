"""The prediction log in Redis, shared by every router replica of a model.

One hash per request id, ``PREFIX + MODEL + ":" + id`` (the id bounded to 256 bytes, see
``prediction_log.id_key``): a field per revision holding its encoded answer (at most
``MAX_ANSWER_BYTES``) and ``_l`` once labelled, with the TTL set on every write. What one
entry costs is thus bounded by the routing table's revisions, and the whole by the
request rate times the TTL; Redis's own ``maxmemory`` with ``maxmemory-policy
volatile-ttl`` (or ``allkeys-lru`` on a dedicated instance) is the hard byte budget,
evicting the entries nearest their end first (docs/drift.md).

Labelling is atomic across replicas: a Lua script sets ``_l`` only on entries that exist
(never creating one without a TTL), and only the first replica to set it counts the label.
Every call has a short timeout: a Redis that is down or slow costs the feedback endpoint a
503 and the recorder a counted failure, never a request.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serinus_serving.router.prediction_log import Lookup, PredictionLogError, Record

LABELLED = "_l"
_MARK = """
local marked = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    marked[i] = redis.call('HSETNX', key, ARGV[1], '1')
  else
    marked[i] = 0
  end
end
return marked
"""


class RedisLog:
    def __init__(
        self, url: str, *, ttl: float, prefix: str = "serinus:", timeout: float = 0.5
    ) -> None:
        self.ttl_ms = max(1, int(ttl * 1000))
        self.prefix = prefix
        self.url = url
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
        self._mark = self.client.register_script(_MARK)

    async def record(self, records: Sequence[Record]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for rec in records:
            key = self.prefix + rec.key
            pipe.hset(key, rec.revision, rec.answer)
            if rec.primary:  # a reused id: a label refers to this request now
                pipe.hdel(key, LABELLED)
            pipe.pexpire(key, self.ttl_ms)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise PredictionLogError(f"redis {self.url}: {exc}") from None

    async def lookup(self, keys: Sequence[str]) -> list[Lookup]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self.prefix + key)
        try:
            found: list[dict[bytes, bytes]] = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise PredictionLogError(f"redis {self.url}: {exc}") from None
        lookups = []
        for fields in found:
            if not fields:
                lookups.append(Lookup("unknown_id", {}))
            elif LABELLED.encode() in fields:
                lookups.append(Lookup("duplicate", {}))
            else:
                answers = {k.decode("utf-8", "replace"): v for k, v in fields.items()}
                lookups.append(Lookup("found", answers))
        return lookups

    async def mark(self, keys: Sequence[str]) -> list[bool]:
        if not keys:
            return []
        try:
            marked = await self._mark(keys=[self.prefix + k for k in keys], args=[LABELLED])
        except (RedisError, OSError) as exc:
            raise PredictionLogError(f"redis {self.url}: {exc}") from None
        return [int(m) == 1 for m in marked]

    async def close(self) -> None:
        await self.client.aclose()

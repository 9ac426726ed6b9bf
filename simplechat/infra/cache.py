"""The recent-message cache: the last N messages of each conversation, oldest first.

Each conversation has a list of JSON payloads and a state marker: ``all`` when the list holds
every message of the conversation, ``partial`` when older ones exist only in SQL. A missing
marker or an empty list means "unknown" (never warmed, flushed or expired): the caller then
reads SQL and re-warms. Client ids of recent sends are kept beside it so retries are not stored
twice.

The conversation's list is its main flow. Each thread has a list of its own, with the same
rules, named by ``(conversation id, root id)`` wherever a conversation id names the main one:
a thread reply goes on its thread's list (and on the main one too when it is also sent to the
conversation; ``lists_of``), and its root, when the main list holds it, gets its ``thread``
summary updated in place (``ROOT_STEP`` and ``SUMMARY_STEP``, in the intake's script).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis as redis_lib

from simplechat.infra.fastjson import dumps, loads
from simplechat.infra.redis_client import Batch

ALL = "all"
PARTIAL = "partial"
EMPTY = "empty"  # warmed from SQL, which had no message: the list itself cannot be empty

# A list of messages: a conversation's main flow (its id), or one thread of it (the
# conversation's id and the root's id).
ListId = int | tuple[int, str]
# The repliers a root's ``thread`` summary names at most, in the order they first replied.
THREAD_PARTICIPANTS = 5


def lists_of(payload: dict) -> list[ListId]:
    """The lists a message is kept on: the main flow's, its thread's, or both."""
    conversation_id, thread_id = payload["conversation_id"], payload.get("thread_id")
    if not thread_id:
        return [conversation_id]
    lists: list[ListId] = [(conversation_id, thread_id)]
    if payload.get("also_to_conversation"):
        lists.insert(0, conversation_id)
    return lists


def bump_thread(root: dict, sender_id: int, timestamp: str) -> dict:
    """``root`` with its ``thread`` summary counting one more reply, from ``sender_id`` at
    ``timestamp`` (what SUMMARY_STEP does in Redis)."""
    summary = root.get("thread") or {}
    people = list(summary.get("participants") or [])
    if sender_id not in people and len(people) < THREAD_PARTICIPANTS:
        people.append(sender_id)
    return {**root, "thread": {"reply_count": int(summary.get("reply_count") or 0) + 1,
                               "last_reply_at": timestamp, "participants": people}}

# Lua, for this script and the send script (infra.intake): appends ``payload`` to ``list_key``,
# keeping the newest ``max_length`` and refreshing ``ttl``; ``state_key`` becomes 'partial' once
# older messages exist only in SQL, and unknown when the list was missing.
PUSH_STEP = """
do
  local had = redis.call('EXISTS', list_key)
  local length = redis.call('RPUSH', list_key, payload)
  if length > max_length then
    redis.call('LTRIM', list_key, -max_length, -1)
    redis.call('SET', state_key, 'partial', 'EX', ttl)
  elseif had == 0 then
    if redis.call('GET', state_key) == 'empty' then
      -- Known to have had no message: now it holds them all.
      redis.call('SET', state_key, 'all', 'EX', ttl)
    else
      -- The list was missing (flushed or expired): what SQL holds is unknown until re-warmed.
      redis.call('DEL', state_key)
    end
  else
    redis.call('EXPIRE', state_key, ttl)
  end
  redis.call('EXPIRE', list_key, ttl)
end
"""

# KEYS: list, state, dedupe key (or "" for none). ARGV: payload json, max length, ttl seconds,
# dedupe ttl seconds. Returns the existing payload for a known client id, else "" after pushing.
_PUSH = """
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return existing end
end
local list_key, state_key, payload = KEYS[1], KEYS[2], ARGV[1]
local max_length, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
""" + PUSH_STEP + """
if KEYS[3] ~= '' then
  redis.call('SET', KEYS[3], payload, 'EX', tonumber(ARGV[4]))
end
return ''
"""


# Lua: sets ``found`` to the index (1-based) and ``raw`` to the payload in ``items`` whose id is
# ``message_id``; ``needle`` ('"id":"<id>"') skips the others cheaply (a reply names its
# original's id too, so a match is decoded to be sure).
FIND_STEP = """
for i, item in ipairs(items) do
  if string.find(item, needle, 1, true) and cjson.decode(item)['id'] == message_id then
    found, raw = i, item
    break
  end
end
"""

# KEYS: list. ARGV: needle, message id, the new payload json, and the payload json it replaces
# ("" for any). Replaces the message in place; returns 1 if done, the current payload if it was
# not the one expected, else 0 (not in the list).
_REPLACE = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local needle, message_id, found, raw = ARGV[1], ARGV[2], nil, nil
""" + FIND_STEP + """
if not found then return 0 end
if ARGV[4] ~= '' and raw ~= ARGV[4] then return raw end
redis.call('LSET', KEYS[1], found - 1, ARGV[3])
return 1
"""

# KEYS: list. ARGV: needle, message id. Returns the cached payload, or "".
_FIND = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local needle, message_id, found, raw = ARGV[1], ARGV[2], nil, nil
""" + FIND_STEP + """
return raw or ''
"""


# Lua, for the intake's script: with ``root_id`` set (a thread reply), finds the root in the
# main list ``main_list_key`` and sets ``root_raw`` and ``root_at`` (its index, 1-based).
# Returns {'invalid'} when the root there is itself a reply or a system line, and
# {'root_unknown'} when the list does not hold it and its thread has no list
# (``thread_list_key``), unless ``root_check`` is 'known' (the caller found it elsewhere: SQL
# or the write buffer). A thread's list exists only once a reply was taken in, its root
# checked then: what makes a root (its conversation, not a reply, not a system line) never
# changes, so it need not be looked up again. ``root_hint_key`` holds the root's payload as
# SUMMARY_STEP last wrote it, found with LPOS (no copy of the list into the script), or ''
# for a minute after the root was not in the list (a root older than the recent list: no
# search each reply); when it is missing or out of date (an edit, a reaction) the list is
# searched.
ROOT_STEP = """
local root_raw, root_at, root_new, root_decoded = nil, nil, '', nil
if root_id ~= '' then
  local hint = redis.call('GET', root_hint_key)
  local items, needle, message_id, found, raw = nil, root_needle, root_id, nil, nil
  local hinted = false
  if hint and hint ~= '' then
    local at = redis.call('LPOS', main_list_key, hint)
    if at then found, raw, hinted = at + 1, hint, true end
  end
  if not found and hint ~= '' then
    items = redis.call('LRANGE', main_list_key, 0, -1)
""" + FIND_STEP + """
  end
  if found then
    -- A hint is only ever a root this step let through: it is not checked again.
    if not hinted then
      root_decoded = cjson.decode(raw)
      if (root_decoded['thread_id'] ~= nil and root_decoded['thread_id'] ~= cjson.null)
          or root_decoded['kind'] == 'system' then
        return {'invalid'}
      end
    end
    root_raw, root_at = raw, found
  elseif root_check ~= 'known' and redis.call('EXISTS', thread_list_key) == 0 then
    return {'root_unknown'}
  elseif hint ~= '' then
    redis.call('SET', root_hint_key, '', 'EX', 60)
  end
end
"""

# Lua, after ROOT_STEP and every refusal: the root found gets its ``thread`` summary counting
# the reply from ``sender`` at ``reply_at``, in place; ``root_new`` is its new payload. The
# summary is written as text: re-encoding the whole payload would turn its empty lists into
# objects. ``,"thread":`` cannot occur inside a JSON string (its quotes would be escaped).
SUMMARY_STEP = """
if root_raw then
  local root = root_decoded or cjson.decode(root_raw)
  local summary, count, people = root['thread'], 0, {}
  if type(summary) == 'table' then
    count = tonumber(summary['reply_count']) or 0
    if type(summary['participants']) == 'table' then
      for _, p in ipairs(summary['participants']) do
        people[#people + 1] = string.format('%d', p)
      end
    end
  end
  local known = false
  for _, p in ipairs(people) do if p == sender then known = true end end
  if not known and #people < """ + str(THREAD_PARTICIPANTS) + """ then
    people[#people + 1] = sender
  end
  local text = '{"reply_count":' .. string.format('%d', count + 1) .. ',"last_reply_at":"'
    .. reply_at .. '","participants":[' .. table.concat(people, ',') .. ']}'
  local s, e = string.find(root_raw, ',"thread":', 1, true)
  if s then
    local rest = string.sub(root_raw, e + 1)
    local tail
    if string.sub(rest, 1, 4) == 'null' then
      tail = string.sub(rest, 5)
    else
      tail = string.sub(rest, string.find(rest, '}', 1, true) + 1)
    end
    root_new = string.sub(root_raw, 1, e) .. text .. tail
  else
    root_new = string.sub(root_raw, 1, -2) .. ',"thread":' .. text .. '}'
  end
  redis.call('LSET', main_list_key, root_at - 1, root_new)
  redis.call('SET', root_hint_key, root_new, 'EX', ttl)
end
"""


def id_needle(message_id: str) -> str:
    return '"id":' + json.dumps(message_id)


def _json(payload: dict) -> str:
    return dumps(payload)  # one encoding everywhere: the buffer finds a payload by its bytes


class RecentCache(Protocol):
    def push(self, conversation_id: int, payload: dict, dedupe_key: str | None) -> dict | None: ...
    def remove(self, conversation_id: int, message_id: str, dedupe_key: str | None) -> None: ...
    def recent(self, conversation_id: int) -> tuple[list[dict], str | None]: ...
    def recent_of(self, conversation_ids: list[int]) -> dict[int, list[dict]]: ...
    def rewarm(self, conversation_id: int, messages: list[dict], complete: bool) -> list[dict]: ...
    def lookup(self, dedupe_key: str) -> dict | None: ...
    def replace(self, conversation_id: int, payload: dict) -> bool: ...
    def find(self, conversation_id: int, message_id: str) -> dict | None: ...
    def update(self, conversation_id: int, message_id: str,
               change: Callable[[dict], dict | None]) -> dict | None: ...


def _sorted_unique(messages: list[dict]) -> list[dict]:
    by_id = {m["id"]: m for m in messages}
    return [by_id[k] for k in sorted(by_id)]


class RedisRecentCache:
    def __init__(self, redis: redis_lib.Redis, size: int, prefix: str, ttl: int, dedupe_ttl: int):
        self.size = size
        self._redis = redis
        self._prefix = prefix
        self.ttl = ttl
        self.dedupe_ttl = dedupe_ttl
        self._push = redis.register_script(_PUSH)
        self._replace = redis.register_script(_REPLACE)
        self._find = redis.register_script(_FIND)

    def keys(self, list_id: ListId) -> tuple[str, str]:
        """The recent list's key and its state marker's key: a conversation's main flow, or
        one of its threads."""
        if isinstance(list_id, tuple):
            base = f"{self._prefix}conv:{list_id[0]}:thread:{list_id[1]}"
        else:
            base = f"{self._prefix}conv:{list_id}"
        return f"{base}:recent", f"{base}:state"

    def root_hint_key(self, conversation_id: int, root_id: str) -> str:
        """Where the intake keeps a thread's root as it last wrote it (ROOT_STEP)."""
        return f"{self._prefix}conv:{conversation_id}:thread:{root_id}:root"

    def dedupe_key(self, key: str) -> str:
        return f"{self._prefix}cid:{key}"

    def push(self, conversation_id: int, payload: dict, dedupe_key: str | None) -> dict | None:
        """Append a message in one round trip; a known ``dedupe_key`` returns the original."""
        list_key, state_key = self.keys(conversation_id)
        existing = self._push(
            keys=[list_key, state_key, self.dedupe_key(dedupe_key) if dedupe_key else ""],
            args=[_json(payload), self.size, self.ttl, self.dedupe_ttl],
        )
        return loads(existing) if existing else None

    def remove(self, conversation_id: int, message_id: str, dedupe_key: str | None) -> None:
        """Take back a message that could not be queued for storage."""
        list_key, _ = self.keys(conversation_id)
        for raw in self._redis.lrange(list_key, 0, -1):
            if loads(raw).get("id") == message_id:
                self._redis.lrem(list_key, 1, raw)
        if dedupe_key:
            self._redis.delete(self.dedupe_key(dedupe_key))

    def replace(self, conversation_id: int, payload: dict) -> bool:
        """Put an edited or deleted message in place of its old version, if it is cached."""
        list_key, _ = self.keys(conversation_id)
        return self._replace(keys=[list_key], args=[id_needle(payload["id"]), payload["id"],
                                                    _json(payload), ""]) == 1

    def find(self, conversation_id: int, message_id: str) -> dict | None:
        """The cached payload of one message, if the list holds it (one round trip)."""
        list_key, _ = self.keys(conversation_id)
        raw = self._find(keys=[list_key], args=[id_needle(message_id), message_id])
        return loads(raw) if raw else None

    def update(self, conversation_id: int, message_id: str,
               change: Callable[[dict], dict | None]) -> dict | None:
        """Apply ``change`` to a cached message, compare-and-set, so that two changes at once
        (two reactions) do not lose one; returns the new payload, or None when the message is
        not cached (or ``change`` returns None: nothing to do)."""
        list_key, _ = self.keys(conversation_id)
        needle = id_needle(message_id)
        raw = self._find(keys=[list_key], args=[needle, message_id])
        while raw:
            new = change(loads(raw))
            if new is None:
                return None
            answer = self._replace(keys=[list_key], args=[needle, message_id, _json(new), raw])
            if answer == 1:
                return new
            raw = answer if answer != 0 else None
        return None

    def lookup(self, dedupe_key: str) -> dict | None:
        raw = self._redis.get(self.dedupe_key(dedupe_key))
        return loads(raw) if raw else None

    def recent(self, conversation_id: int) -> tuple[list[dict], str | None]:
        batch = Batch(self._redis)
        at = self.queue_recent(batch, conversation_id)
        return self.recent_from(batch.run(), at)

    def queue_recent(self, batch: Batch, list_id: ListId) -> int:
        """``recent`` as steps of a batch (a Batch): the index of the first; the replies go
        to ``recent_from``."""
        list_key, state_key = self.keys(list_id)
        at = batch.command("LRANGE", list_key, 0, -1)
        batch.command("GET", state_key)
        return at

    @staticmethod
    def recent_from(replies: list, at: int) -> tuple[list[dict], str | None]:
        raw, state = replies[at], replies[at + 1]
        for reply in (raw, state):
            if isinstance(reply, Exception):
                raise reply
        state = state.decode() if isinstance(state, bytes) else state
        if not raw:
            return [], (ALL if state == EMPTY else None)
        return _sorted_unique([loads(item) for item in raw]), state

    def recent_of(self, conversation_ids: list[int]) -> dict[int, list[dict]]:
        """What the list holds for each of several conversations, oldest first, in one round
        trip (the conversation list's view of messages still on their way to SQL)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for conversation_id in conversation_ids:
                pipe.lrange(self.keys(conversation_id)[0], 0, -1)
            lists = pipe.execute()
        return {cid: _sorted_unique([loads(item) for item in raw])
                for cid, raw in zip(conversation_ids, lists, strict=True) if raw}

    def rewarm(self, conversation_id: int, messages: list[dict], complete: bool) -> list[dict]:
        """Merge ``messages`` (from SQL) with what the list holds now and write the result back.

        A send that lands while this runs is kept: the merge is retried until no write
        interleaved. Returns the merged list, oldest first.
        """
        list_key, state_key = self.keys(conversation_id)
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(list_key)
                    current = [loads(item) for item in pipe.lrange(list_key, 0, -1)]
                    merged = _sorted_unique(messages + current)
                    has_older = not complete or len(merged) > self.size
                    merged = merged[-self.size:]
                    pipe.multi()
                    pipe.delete(list_key)
                    if merged:
                        pipe.rpush(list_key, *[_json(m) for m in merged])
                        pipe.expire(list_key, self.ttl)
                    state = PARTIAL if has_older else (ALL if merged else EMPTY)
                    pipe.set(state_key, state, ex=self.ttl)
                    pipe.execute()
                    return merged
                except redis_lib.WatchError:
                    continue


class MemoryRecentCache:
    """The same behaviour held in this process, for the single-process embedded default."""

    def __init__(self, size: int, dedupe_ttl: int, max_conversations: int = 10_000):
        self.size = size
        self._dedupe_ttl = dedupe_ttl
        self._max = max_conversations
        self._lists: OrderedDict[int, list[dict]] = OrderedDict()
        self._state: dict[int, str] = {}
        self._dedupe: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def _touch(self, conversation_id: int) -> list[dict]:
        items = self._lists.setdefault(conversation_id, [])
        self._lists.move_to_end(conversation_id)
        while len(self._lists) > self._max:
            evicted, _ = self._lists.popitem(last=False)
            self._state.pop(evicted, None)
        return items

    def push(self, conversation_id: int, payload: dict, dedupe_key: str | None) -> dict | None:
        with self._lock:
            if dedupe_key:
                found = self._live_dedupe(dedupe_key)
                if found is not None:
                    return found
                self._dedupe[dedupe_key] = (time.monotonic() + self._dedupe_ttl, payload)
            items = self._touch(conversation_id)
            had = bool(items)
            items.append(payload)
            if len(items) > self.size:
                del items[: len(items) - self.size]
                self._state[conversation_id] = PARTIAL
            elif not had and self._state.get(conversation_id) != ALL:
                self._state.pop(conversation_id, None)  # unknown until re-warmed
        return None

    def _live_dedupe(self, dedupe_key: str) -> dict | None:
        now = time.monotonic()
        if len(self._dedupe) > 100_000:
            self._dedupe = {k: v for k, v in self._dedupe.items() if v[0] > now}
        entry = self._dedupe.get(dedupe_key)
        return entry[1] if entry and entry[0] > now else None

    def remove(self, conversation_id: int, message_id: str, dedupe_key: str | None) -> None:
        with self._lock:
            items = self._lists.get(conversation_id, [])
            items[:] = [m for m in items if m["id"] != message_id]
            if dedupe_key:
                self._dedupe.pop(dedupe_key, None)

    def lookup(self, dedupe_key: str) -> dict | None:
        with self._lock:
            return self._live_dedupe(dedupe_key)

    def replace(self, conversation_id: int, payload: dict) -> bool:
        with self._lock:
            items = self._lists.get(conversation_id, [])
            for index, item in enumerate(items):
                if item["id"] == payload["id"]:
                    items[index] = payload
                    return True
        return False

    def find(self, conversation_id: int, message_id: str) -> dict | None:
        with self._lock:
            for item in self._lists.get(conversation_id, []):
                if item["id"] == message_id:
                    return item
        return None

    def update(self, conversation_id: int, message_id: str,
               change: Callable[[dict], dict | None]) -> dict | None:
        with self._lock:
            items = self._lists.get(conversation_id, [])
            for index, item in enumerate(items):
                if item["id"] == message_id:
                    new = change(item)
                    if new is not None:
                        items[index] = new
                    return new
        return None

    def recent(self, conversation_id: int) -> tuple[list[dict], str | None]:
        with self._lock:
            items = list(self._lists.get(conversation_id, []))
            state = self._state.get(conversation_id)
            if not items and state != ALL:  # ALL with no item: warmed, and there were none
                state = None
        return _sorted_unique(items), state

    def recent_of(self, conversation_ids: list[int]) -> dict[int, list[dict]]:
        with self._lock:
            lists = {cid: list(self._lists[cid]) for cid in conversation_ids
                     if self._lists.get(cid)}
        return {cid: _sorted_unique(items) for cid, items in lists.items()}

    def rewarm(self, conversation_id: int, messages: list[dict], complete: bool) -> list[dict]:
        with self._lock:
            items = self._touch(conversation_id)
            merged = _sorted_unique(messages + items)
            has_older = not complete or len(merged) > self.size
            items[:] = merged[-self.size:]
            self._state[conversation_id] = PARTIAL if has_older else ALL
            return list(items)

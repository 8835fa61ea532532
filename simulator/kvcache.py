"""The KV cache of one simulated server: a pool of fixed-size blocks with automatic prefix caching.

Like vLLM's block pool: a full prompt block is identified by its chained content hash and stays cached after its
request finishes, until the space is needed; unreferenced cached blocks are evicted least recently used first, and a
finished request's blocks are queued tail first, so a prompt's last blocks go before its first ones. Blocks that
hold no reusable content (a partial last prompt block, generated tokens) are simply freed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence


class KVCache:
    """Block accounting and the prefix-cache index of one server."""

    def __init__(self, num_blocks: int, on_evict: Callable[[int], None] | None = None) -> None:
        if num_blocks < 1:
            raise ValueError("the KV cache needs at least one block")
        self.num_blocks = num_blocks
        self._on_evict = on_evict  # told the hash of every cached block evicted
        self._empty = num_blocks  # blocks holding nothing at all
        self._refs: dict[int, int] = {}  # block hash -> number of running requests using it
        self._evictable: OrderedDict[int, None] = OrderedDict()  # cached, unreferenced; least recently used first

    def __contains__(self, block_hash: int) -> bool:
        """Whether a block with this hash is cached (running or evictable)."""
        return block_hash in self._refs

    def cached_prefix(self, hashes: Sequence[int]) -> int:
        """Return how many leading blocks of `hashes` are cached (running or evictable)."""
        count = 0
        for block_hash in hashes:
            if block_hash not in self._refs:
                break
            count += 1
        return count

    def allocate(self, hashes: Sequence[int], total_blocks: int) -> bool:
        """Reserve `total_blocks` blocks for a request whose full prompt blocks have `hashes`.

        Blocks already cached are shared instead of allocated. Returns False, changing nothing, when the space
        (empty blocks plus evictable cached ones) does not suffice.
        """
        refs = self._refs
        shared = [block_hash for block_hash in hashes if block_hash in refs]
        revived = sum(1 for block_hash in shared if refs[block_hash] == 0)
        needed = total_blocks - len(shared)
        if needed > self._empty + len(self._evictable) - revived:
            return False
        for block_hash in shared:
            if refs[block_hash] == 0:
                del self._evictable[block_hash]
            refs[block_hash] += 1
        from_empty = min(needed, self._empty)
        self._empty -= from_empty
        for _ in range(needed - from_empty):
            evicted, _ = self._evictable.popitem(last=False)
            del refs[evicted]
            if self._on_evict is not None:
                self._on_evict(evicted)
        for block_hash in hashes:
            if block_hash not in refs:
                refs[block_hash] = 1
        return True

    def release(self, hashes: Sequence[int], total_blocks: int) -> None:
        """Give back what `allocate(hashes, total_blocks)` reserved; full prompt blocks stay cached."""
        self._empty += total_blocks - len(hashes)
        refs = self._refs
        for block_hash in reversed(hashes):
            refs[block_hash] -= 1
            if refs[block_hash] == 0:
                self._evictable[block_hash] = None

    def used_blocks(self) -> int:
        """Return the number of blocks that running requests hold."""
        return self.num_blocks - self._empty - len(self._evictable)

    def cached_blocks(self) -> int:
        """Return the number of blocks with reusable content (held or evictable)."""
        return len(self._refs)

    def usage(self) -> float:
        """Return the fraction of blocks held by running requests (vLLM's `kv_cache_usage_perc`, 0..1)."""
        return self.used_blocks() / self.num_blocks

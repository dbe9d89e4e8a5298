"""KV cache for incremental decoding: per-layer key/value (or recurrent) state and position count.

Softmax attention appends keys and values along time; sliding-window attention keeps only the
last `window - 1` of them; linear attention keeps a fixed-size recurrent state. Cross-attention
caches the projected encoder memory once. Buffers grow by doubling (or are preallocated with
`max_length`) so appending one token is a copy into a slice, not a concatenation of the history.
"""

from __future__ import annotations

import torch
from torch import Tensor


class LayerCache:
    """One attention layer's cached state: named tensors and how many positions it has consumed."""

    def __init__(self, max_length: int | None = None) -> None:
        self.max_length = max_length
        self.length = 0  # positions seen so far (including any that a window has since dropped)
        self.start = 0  # position of the first key still held
        self.state: dict[str, Tensor] = {}
        self._keys: Tensor | None = None  # (B, nkv, capacity, hs)
        self._values: Tensor | None = None
        self._held = 0  # keys currently stored in the buffers

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store new keys/values (B, nkv, T, hs); return all held keys and values, oldest first."""
        new = k.shape[2]
        if self._keys is None or self._values is None:
            capacity = max(self.max_length or 0, new, 16)
            self._keys = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            self._values = v.new_empty(v.shape[0], v.shape[1], capacity, v.shape[3])
        elif self._held + new > self._keys.shape[2]:
            capacity = max(2 * self._keys.shape[2], self._held + new)
            self._keys = _grow(self._keys, self._held, capacity)
            self._values = _grow(self._values, self._held, capacity)
        self._keys[:, :, self._held : self._held + new] = k
        self._values[:, :, self._held : self._held + new] = v
        self._held += new
        self.length += new
        return self._keys[:, :, : self._held], self._values[:, :, : self._held]

    def keep_last(self, n: int) -> None:
        """Drop all but the newest `n` held keys/values (sliding-window attention)."""
        if self._keys is None or self._values is None or self._held <= n:
            return
        drop = self._held - n
        self._keys[:, :, :n] = self._keys[:, :, drop : self._held].clone()
        self._values[:, :, :n] = self._values[:, :, drop : self._held].clone()
        self._held = n
        self.start += drop

    def reorder(self, indices: Tensor) -> None:
        """Select batch rows (beam search): every tensor's dim 0 is indexed by `indices`."""
        if self._keys is not None and self._values is not None:
            indices = indices.to(self._keys.device)
            held = self._held
            if len(indices) == self._keys.shape[0]:  # same batch size: gather only what is held
                self._keys[:, :, :held] = self._keys[:, :, :held].index_select(0, indices)
                self._values[:, :, :held] = self._values[:, :, :held].index_select(0, indices)
            else:
                self._keys = self._keys.index_select(0, indices)
                self._values = self._values.index_select(0, indices)
        for name, tensor in self.state.items():
            self.state[name] = tensor.index_select(0, indices.to(tensor.device))


def _grow(buffer: Tensor, held: int, capacity: int) -> Tensor:
    bigger = buffer.new_empty(buffer.shape[0], buffer.shape[1], capacity, buffer.shape[3])
    bigger[:, :, :held] = buffer[:, :, :held]
    return bigger


class KVCache:
    """Cached attention state for every layer of a model; `length` is the number of positions seen.

    Models index it by layer (`cache[i]`); an encoder-decoder model has a second set of layers for
    cross-attention (`cache.cross[i]`), filled once from the encoder memory.
    """

    def __init__(self, n_layers: int, max_length: int | None = None, cross: bool = False) -> None:
        self.layers = [LayerCache(max_length) for _ in range(n_layers)]
        self.cross = [LayerCache() for _ in range(n_layers)] if cross else []

    def __getitem__(self, index: int) -> LayerCache:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def length(self) -> int:
        """Positions already consumed (the position of the next token)."""
        return self.layers[0].length if self.layers else 0

    def reorder(self, indices: Tensor) -> None:
        """Keep/duplicate batch rows, e.g. the surviving beams: `indices` is a LongTensor (B',)."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        for layer in [*self.layers, *self.cross]:
            layer.reorder(indices)

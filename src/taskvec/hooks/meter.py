"""Counting the work that runs through a model's blocks (positions, backward positions, seconds): a
read of the passes, as :mod:`taskvec.hooks.capture` reads activations."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from taskvec.architectures import describe


class Meter:
    """Counts the work that goes through the model's blocks while it is ``on``, in full-forward
    positions: every block's input positions (padding included), summed and divided by the number of
    blocks, so that a pass that starts at a later block (the layer sweep's) counts only the blocks it
    runs, and a pass over a cached prefix only its new positions. A block whose output carries a
    gradient is differentiated after (attribution patching's backward pass): its positions count
    again in ``backward_positions``. Also the seconds."""

    def __init__(self, lm) -> None:
        self.layers = describe(lm.model).layers
        self.block_positions, self.backward_block_positions, self.seconds = 0, 0, 0.0

    @property
    def positions(self) -> float:
        return self.block_positions / len(self.layers)

    @property
    def backward_positions(self) -> float:
        return self.backward_block_positions / len(self.layers)

    @contextlib.contextmanager
    def on(self) -> Iterator[Meter]:
        def count(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            self.block_positions += int(hidden.shape[0]) * int(hidden.shape[1])

        def count_backward(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            if hidden.requires_grad:
                self.backward_block_positions += int(hidden.shape[0]) * int(hidden.shape[1])

        handles = [block.register_forward_pre_hook(count, with_kwargs=True) for block in self.layers]
        handles += [block.register_forward_hook(count_backward) for block in self.layers]
        start = time.perf_counter()
        try:
            yield self
        finally:
            self.seconds += time.perf_counter() - start
            for handle in handles:
                handle.remove()

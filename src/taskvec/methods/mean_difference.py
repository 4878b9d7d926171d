"""The mean difference (contrastive activation addition, Rimsky et al. 2024, applied to ICL): the mean
over the pool's dummy queries of the last-token stream after each block *with* the demonstrations
minus the same query's stream *without* them (its bare query); ``strength`` times it is *added* to
the stream after one block at the bare query's last token and at every generated token, as CAA adds
its vector at every position after the prompt. The strength is chosen with the block.

For an additive method the layer sweep's replaced value is the bare query's own stream plus the
scaled vector, which is what adding does at that position."""

from __future__ import annotations

import dataclasses

from taskvec.methods.base import Method, Vectors
from taskvec.methods.task_vector import theta


@dataclasses.dataclass(frozen=True)
class MeanDifference(Method):
    def make(self, lm, pool, fmt, batch_size, settings, keep) -> Vectors:
        from taskvec.forward.capture import last_token_states

        bare = last_token_states(lm, [fmt.query.format(x=d) for p in pool for d in p.dummies], batch_size)
        # theta averages each prompt's dummies, then the prompts: the same weights as over all dummies,
        # since every prompt of the pool has as many
        return Vectors(theta(lm, pool, fmt, batch_size) - bare.mean(axis=0))


METHODS = (
    MeanDifference(
        "mean_difference",
        label="mean difference",
        summary="the mean stream with minus without the demonstrations, scaled and added after one block at the "
        "query's last token and every generated one",
        operation="add",
        generation_positions="generated",
        strengths=(0.5, 1.0, 2.0, 4.0),
        order=20,
    ),
)

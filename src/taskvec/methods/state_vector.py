"""The in-context state vector (Li et al., NeurIPS 2024), as its authors' code computes it.

The attention heads' outputs (the input of each block's attention output projection) at each
demonstration's separator and at the query's last token of the pool's labelled prompts, averaged (the
authors' *inner optimisation*); ``state_vector_momentum`` adds their *momentum optimisation* (one
class, two registrations). Each *replaces* the bare query's last-token heads' outputs in blocks 0 to L
together, L chosen on held-out pairs (the authors hard-code L per task and model; no selection code is
released); generated tokens are not patched, as in the authors' code. The site is before the output
projection in every architecture (on Gemma 2 and 3 the projection's output then passes the
attention's post-norm, as in the unpatched model). Where the authors take every token of a separator
that tokenizes into several, this takes the separator's last token."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from taskvec.errors import ConfigError
from taskvec.methods.base import Method, Vectors

if TYPE_CHECKING:
    from collections.abc import Sequence

    from taskvec.models import LoadedModel
    from taskvec.prompts import Prompt, PromptFormat


def separator_positions(lm: LoadedModel, fmt: PromptFormat, prompt: Prompt) -> list[int]:
    """In ``fmt.render(prompt.demonstrations, prompt.query)`` as the model tokenizes it: the index of
    the token that ends each demonstration's input and separator (the demonstration's template up to
    ``{y}``: ``example:{x}->``), then the query's last token: ``k + 1`` indices."""
    text = fmt.render(prompt.demonstrations, prompt.query)
    encoded = lm.tokenizer(text, return_offsets_mapping=True)
    ends, start = [], 0
    before_answer = fmt.demonstration.split("{y}")[0]
    for x, y in prompt.demonstrations:
        ends.append(start + len(before_answer.format(x=x)))
        start += len(fmt.demonstration.format(x=x, y=y)) + len(fmt.separator)
    ends.append(len(text))
    # the last token that starts before each end (special tokens have empty spans and are never chosen)
    starts = [(a, b) for a, b in encoded["offset_mapping"]]
    positions = []
    for end in ends:
        inside = [i for i, (a, b) in enumerate(starts) if b > a and a < end]
        positions.append(inside[-1])
    return positions


INNER_STATES = 6  # the authors' inner optimisation averages the last 6 demonstrations' states and the query's
MOMENTUM_STEPS = 5  # their momentum step weighs the last 5 differences 1, 2, 4, 8, 16


def state_vector_from_pool(
    lm: LoadedModel, pool: Sequence[Prompt], fmt: PromptFormat, momentum: bool, batch_size: int = 16
) -> np.ndarray:
    """The in-context state vector of Li et al. (NeurIPS 2024), as its authors' code computes it:
    ``[n_layers, n_heads * head_dim]`` float32, the input of each block's attention output projection
    (every head's output).

    Each labelled prompt of the pool (its demonstrations and its query) runs once; at each
    demonstration's separator and at the query's last token (:func:`separator_positions`), the
    projection's input in every block; averaged over the pool's prompts. *Inner optimisation*: the
    mean of the last ``min(k, 6)`` demonstrations' states and the query's (the authors: 6 of their
    10 demonstrations and the query). *Momentum optimisation*, on top of it: plus the weighted mean
    of the last ``min(k - 1, 5)`` differences between consecutive demonstrations' states, weights
    1, 2, 4, ... oldest first (the authors' one bias-corrected step of momentum 0.5 and step size 1)."""
    import torch

    from taskvec.forward.batching import batches, encode
    from taskvec.hooks.capture import capture_head_outputs
    from taskvec.methods.heads import attention_heads

    labelled = [p for p in pool if p.query]
    if not labelled:
        raise ConfigError("a state vector needs demonstration sets with a query; the pool has none")
    heads = attention_heads(lm)
    k = len(labelled[0].demonstrations)
    total = np.zeros((k + 1, heads.n_layers, heads.n_heads * heads.head_dim), dtype=np.float64)
    texts = [fmt.render(p.demonstrations, p.query) for p in labelled]
    for rows in batches(texts, batch_size):
        batch = encode(lm, [texts[i] for i in rows])
        pads = (batch.attention_mask == 0).sum(dim=1).cpu().numpy()
        with torch.inference_mode(), capture_head_outputs(heads, every_position=True) as seen:
            lm.model.base_model(**batch.inputs(), use_cache=False)
        for row, index in enumerate(rows):
            at = [pads[row] + position for position in separator_positions(lm, fmt, labelled[index])]
            total += torch.stack([z[row, at] for z in seen], dim=1).double().cpu().numpy()
    states = total / len(labelled)  # [k + 1, n_layers, width]: demonstrations' separators, then the query
    inner = states[-1 - min(k, INNER_STATES) :].mean(axis=0)
    if not momentum or k < 2:
        return inner.astype(np.float32)
    steps = min(k - 1, MOMENTUM_STEPS)
    differences = np.diff(states[:k], axis=0)[-steps:]
    weights = 2.0 ** np.arange(steps)
    return (inner + np.tensordot(weights, differences, axes=1) / weights.sum()).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class StateVector(Method):
    momentum: bool = False

    def make(self, lm, pool, fmt, batch_size, settings, keep) -> Vectors:
        return Vectors(state_vector_from_pool(lm, pool, fmt, self.momentum, batch_size))


METHODS = (
    StateVector(
        "state_vector",
        label="state vector (inner)",
        summary="the state vector (Li et al. 2024), inner optimisation: the attention heads' outputs at the "
        "demonstrations' separators and the query's last token, averaged, replacing the bare query's last-token "
        "heads' outputs in blocks 0 to L",
        operation="replace",
        generation_positions="last",
        strengths=(1.0,),
        site="attention_heads",
        layers="up_to",
        order=60,
    ),
    StateVector(
        "state_vector_momentum",
        label="state vector (momentum)",
        summary="the state vector with its authors' momentum optimisation: plus the weighted mean of the differences "
        "between consecutive demonstrations' states",
        operation="replace",
        generation_positions="last",
        strengths=(1.0,),
        site="attention_heads",
        layers="up_to",
        order=70,
        momentum=True,
    ),
)

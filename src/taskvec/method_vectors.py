"""How the methods of :mod:`taskvec.methods` make their vectors from demonstrations, each as its
authors' code computes it (where this differs, the function says how): the in-context vector, the
function vector from a pool of labelled sets (its heads ranked exactly or by attribution patching),
and the state vector. Torch and the model code are imported where they are used, so that the
command line can list the methods without loading them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from taskvec.errors import ConfigError

if TYPE_CHECKING:
    from taskvec.models import LoadedModel
    from taskvec.prompts import Prompt, PromptFormat


def pool_pairs(pool: Sequence[Prompt]) -> list[tuple[str, str]]:
    """The pool's labelled pairs, each once, in the order the pool shows them."""
    return list(dict.fromkeys(pair for prompt in pool for pair in prompt.demonstrations))


def in_context_vector(lm: LoadedModel, pairs: Sequence[tuple[str, str]], batch_size: int = 16) -> np.ndarray:
    """The in-context vector of Liu et al. (ICML 2024), as its authors' code computes it:
    ``[n_layers, hidden]`` float32.

    Each pair's input and output run alone (whitespace stripped; no template, the tokenizer's own
    special tokens); at the last token, the embedding layer's output and the residual stream after
    every block are concatenated, and the output's minus the input's is one row per pair. The vector
    is the rows' mean plus their first principal direction (centred SVD, sign by scikit-learn's rule:
    the largest entry of the first left singular vector positive; unit norm over all layers
    together), with the embedding layer's part dropped: one vector per block. The authors also strip
    punctuation from each side; this does not (an algorithmic task's input is its punctuation)."""
    from taskvec.forward.capture import last_token_states

    if len(pairs) < 2:
        raise ConfigError(f"an in-context vector needs at least 2 pairs, got {len(pairs)}")
    texts = [x.strip() for x, _ in pairs] + [y.strip() for _, y in pairs]
    states = last_token_states(lm, texts, batch_size)  # [2k, layers, hidden]
    embedding = _last_token_embeddings(lm, texts)  # [2k, hidden]
    full = np.concatenate([embedding[:, None], states], axis=1)
    k = len(pairs)
    rows = (full[k:] - full[:k]).reshape(k, -1)
    mean = rows.mean(axis=0)
    left, _, right = np.linalg.svd(rows - mean, full_matrices=False)
    sign = np.sign(left[np.argmax(np.abs(left[:, 0])), 0]) or 1.0
    direction = (right[0] * sign + mean).reshape(full.shape[1:])
    return direction[1:].astype(np.float32)


def _last_token_embeddings(lm: LoadedModel, texts: Sequence[str]) -> np.ndarray:
    """The input embedding module's output for each text's last token (before any scaling the
    model's forward applies to it, as a hook on the module sees it)."""
    import torch

    ids = [lm.tokenizer.encode(text)[-1] for text in texts]  # as encode() tokenizes them for the pass
    with torch.inference_mode():
        rows = lm.model.get_input_embeddings()(torch.tensor(ids, device=lm.device))
    return rows.float().cpu().numpy()


HEAD_RANKINGS = ("exact", "attribution")


def function_vector_from_pool(
    lm: LoadedModel,
    pool: Sequence[Prompt],
    fmt: PromptFormat,
    ranking: str = "exact",
    batch_size: int = 16,
    details: dict | None = None,
    n_heads: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The function vector of Todd et al. (ICLR 2024) from a pool of labelled demonstration sets
    (each set's demonstrations and its query): every head's mean output at the last token of the
    pool's prompts; each head's average indirect effect on the same prompts with shuffled labels, by
    patching every head (``ranking="exact"``, :func:`taskvec.function_vectors.heads.head_patch_scan`)
    or estimated by attribution patching (``"attribution"``, one forward and one backward pass per
    prompt, :func:`taskvec.function_vectors.heads.head_attribution`); the sum of the ``n_heads`` heads
    of largest effect (default: the paper's 10 of GPT-J's 448 heads, scaled to the model) in
    residual-stream space. ``[n_layers, hidden]``: the same vector for every block (one is chosen).
    ``details`` (a dict), where given, receives the effects and the heads; where it already holds
    ``heads`` (as the shuffled-label control gets the method's own), those heads are summed and no
    ranking is made."""
    from taskvec.controls import shuffle_labels
    from taskvec.function_vectors.heads import head_attribution, head_patch_scan, mean_head_outputs
    from taskvec.function_vectors.vectors import answer_token, default_head_count, function_vector, top_heads

    if ranking not in HEAD_RANKINGS:
        raise ValueError(f"ranking must be one of {HEAD_RANKINGS}, not {ranking!r}")
    labelled = [p for p in pool if p.query and p.answers]
    if not labelled:
        raise ConfigError("a function vector needs demonstration sets with a labelled query; the pool has none")
    means = mean_head_outputs(lm, [fmt.render(p.demonstrations, p.query) for p in labelled], batch_size)
    n_layers = means.shape[0]
    if details is not None and "heads" in details:
        return np.repeat(function_vector(lm, means, details["heads"])[None], n_layers, axis=0)
    shuffled = shuffle_labels(labelled, seed)
    texts = [fmt.render(p.demonstrations, p.query) for p in shuffled]
    targets = [answer_token(lm, text, p.answers[0]) for text, p in zip(texts, shuffled)]
    scan = head_patch_scan if ranking == "exact" else head_attribution
    clean, patched = scan(lm, texts, targets, means, batch_size)
    effects = (patched - clean[:, None, None]).mean(axis=0)
    heads = top_heads(effects, n_heads or default_head_count(lm))
    vector = function_vector(lm, means, heads)
    if details is not None:
        details.update(ranking=ranking, average_indirect_effect=effects, heads=heads, prompts=len(texts))
    return np.repeat(vector[None], n_layers, axis=0)


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
    from taskvec.function_vectors.heads import attention_heads, capture_head_outputs

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

"""Extraction: the residual stream after every block at each text's last token, and the shared-prefix
pass that runs a group's demonstrations once for all its queries (and can continue the last one)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from taskvec.architectures import describe
from taskvec.forward.batching import (
    HostCopies,
    batches,
    cheapest_runs,
    encode,
    left_pad,
    min_sliding_window,
    progress_bar,
    width_multiple,
)
from taskvec.forward.generate import Continuation, continue_on_cache, greedy_continue
from taskvec.forward.readout import next_tokens_from_states, read_out
from taskvec.hooks import to_device
from taskvec.hooks.capture import capture_last_token
from taskvec.models import LoadedModel


@torch.inference_mode()
def last_token_states(
    lm: LoadedModel, texts: Sequence[str], batch_size: int = 16, progress: bool = False
) -> np.ndarray:
    """Residual stream after every block at each text's last token: ``[n_texts, n_layers, hidden]``."""
    layers = describe(lm.model).layers
    result = np.zeros((len(texts), len(layers), lm.model.config.hidden_size), dtype=np.float32)
    copies = HostCopies(result)
    with progress_bar(len(texts), "extract", progress) as bar:
        for rows in batches(texts, batch_size):
            batch = encode(lm, [texts[i] for i in rows])
            with capture_last_token(layers) as states:
                lm.model.base_model(**batch.inputs(), use_cache=False)
            copies.add(rows, torch.stack(states, dim=1))
            bar.update(len(rows))
    copies.flush()
    return result


def shared_prefix_length(token_lists: Sequence[list[int]]) -> int:
    """Length of the longest token prefix common to every list, leaving each at least one token."""
    shortest = min(len(tokens) for tokens in token_lists)
    common = 0
    while common < shortest - 1 and all(tokens[common] == token_lists[0][common] for tokens in token_lists):
        common += 1
    return common


@torch.inference_mode()
def shared_prefix_states(
    lm: LoadedModel,
    groups: Sequence[Sequence[str]],
    batch_size: int = 16,
    progress: bool = False,
    continue_last: Continuation | None = None,
    answers: Sequence[Sequence[str]] | None = None,
) -> np.ndarray | tuple[np.ndarray, list[list[int]]]:
    """Last-token block outputs of every text in ``groups``: ``[n_groups, group_size, n_layers, hidden]``.

    The texts of a group share a long prefix (the demonstrations) and differ in a short suffix (the
    query). Each group's common token prefix runs once; its KV cache is then reused by every suffix.
    Texts are tokenized whole, so the result equals running each text alone.

    With ``continue_last``, the last text of each group (the ICL prompt) is also continued greedily
    on its own cache, starting from its argmax next token; the generated ids per group are returned
    beside the states. ``answers`` (per group) stops a generation that can no longer become one.
    """
    layers = describe(lm.model).layers
    group_size = len(groups[0])
    if any(len(group) != group_size for group in groups):
        raise ValueError("every group needs the same number of texts")
    hidden = lm.model.config.hidden_size
    result = np.zeros((len(groups), group_size, len(layers), hidden), dtype=np.float32)
    tokenized = [[lm.tokenizer.encode(text) for text in group] for group in groups]
    window = min_sliding_window(lm)
    if window is not None and max(len(t) for group in tokenized for t in group) > window:
        flat = last_token_states(lm, [text for group in groups for text in group], batch_size, progress)
        result = flat.reshape(result.shape)
        if continue_last is None:
            return result
        first = next_tokens_from_states(lm, result[:, -1, -1])
        return result, greedy_continue(
            lm, [group[-1] for group in groups], first.tolist(), continue_last, batch_size, answers=answers
        )
    generated: list[list[int]] = [[] for _ in groups]
    splits = [shared_prefix_length(group) for group in tokenized]
    keys = [" ".join(group) for group in groups]
    copies = HostCopies(result.reshape(len(groups) * group_size, len(layers), hidden))
    with progress_bar(len(groups), "extract", progress) as bar:
        for rows in batches(keys, batch_size):
            flat_rows = (rows[:, None] * group_size + np.arange(group_size)).reshape(-1)
            prefix_ids, prefix_mask = left_pad(
                [tokenized[i][0][: splits[i]] for i in rows], lm.pad_token_id, width_multiple(lm)
            )
            prefix_cache = None
            if prefix_mask.any():
                prefix_positions = (prefix_mask.cumsum(dim=1) - 1).clamp(min=0)
                prefix_cache = lm.model.base_model(
                    input_ids=to_device(prefix_ids, lm.device),
                    attention_mask=to_device(prefix_mask, lm.device),
                    position_ids=to_device(prefix_positions, lm.device),
                    use_cache=True,
                ).cache
            else:
                prefix_mask = prefix_mask[:, :0]
            suffixes = [t[splits[i] :] for i in rows for t in tokenized[i]]
            buckets = length_buckets(np.array([len(t) for t in suffixes]))
            for number, bucket in enumerate(buckets):
                group_of_row = torch.from_numpy(bucket // group_size)
                cache = None
                if prefix_cache is not None:
                    cache = prefix_cache if number == len(buckets) - 1 else copy.deepcopy(prefix_cache)
                    cache.reorder_cache(to_device(group_of_row, lm.device))
                suffix_ids, suffix_mask = left_pad([suffixes[i] for i in bucket], lm.pad_token_id, width_multiple(lm))
                # Suffixes are left-padded after the prefix: padding sits mid-row, masked out, and
                # positions continue from each row's own prefix length.
                row_prefix_mask = prefix_mask[group_of_row]
                positions = (row_prefix_mask.sum(dim=1, keepdim=True) + suffix_mask.cumsum(dim=1) - 1).clamp(min=0)
                mask = to_device(torch.cat([row_prefix_mask, suffix_mask], dim=1), lm.device)
                positions = to_device(positions, lm.device)
                with capture_last_token(layers) as states:
                    out = lm.model.base_model(
                        input_ids=to_device(suffix_ids, lm.device),
                        attention_mask=mask,
                        position_ids=positions,
                        cache=cache,
                        use_cache=cache is not None or continue_last is not None,
                    )
                copies.add(flat_rows[bucket], torch.stack(states, dim=1))
                last = np.nonzero(bucket % group_size == group_size - 1)[0]
                if continue_last is not None and len(last):
                    selected = to_device(torch.from_numpy(last), lm.device)
                    out.cache.reorder_cache(selected)
                    first = read_out(lm, states[-1][selected].float().cpu().numpy()).argmax(dim=-1).tolist()
                    owners = [int(flat_rows[bucket[i]]) // group_size for i in last]
                    continued = [generated[group] for group in owners]
                    for ids, token in zip(continued, first):
                        ids.append(int(token))
                    continue_on_cache(
                        lm,
                        out.cache,
                        mask[selected],
                        positions[selected, -1:],
                        continued,
                        continue_last,
                        None if answers is None else [answers[group] for group in owners],
                    )
            bar.update(len(rows))
    copies.flush()
    return result if continue_last is None else (result, generated)


PASS_OVERHEAD_TOKENS = 64  # a pass's fixed cost (cache copy, kernel launches), in padded suffix tokens


def length_buckets(lengths: np.ndarray) -> list[np.ndarray]:
    """Split rows into runs of similar length (indices into ``lengths``), minimising padded tokens
    plus a fixed cost per run: suffixes of one to a dozen tokens padded to the longest waste more
    than half of a suffix pass."""
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    runs = cheapest_runs(
        len(order), lambda start, end: (end - start) * int(sorted_lengths[end - 1]) + PASS_OVERHEAD_TOKENS
    )
    return [np.sort(order[start:end]) for start, end in runs]

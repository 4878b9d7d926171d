"""Greedy generation for the strict metric: where it stops, decoding on a KV cache, and generation
after whole texts (under the caller's intervention, if any)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import torch

from taskvec.answers import answer_ended
from taskvec.architectures import describe
from taskvec.forward.batching import batches, encode, progress_bar
from taskvec.hooks.intervention import Intervention, Interventions, intervene
from taskvec.models import LoadedModel


@dataclasses.dataclass(frozen=True)
class Continuation:
    """When the strict metric's greedy generation stops: after ``max_new_tokens`` tokens, when the
    decoded generation reaches the separator ``stop`` that ends its answer (the rule the strict metric
    cuts by, :func:`taskvec.answers.answer_ended`), at the end-of-text token, or, given a row's valid
    answers, as soon as the generation can no longer become one of them (its stripped text is not a
    prefix of any answer). The last rule changes no score, only saves the passes of answers already
    wrong; the recorded generation then ends where it went wrong."""

    max_new_tokens: int
    stop: str

    def finished(self, lm: LoadedModel, ids: list[int], answers: Sequence[str] | None = None) -> bool:
        if len(ids) >= self.max_new_tokens or ids[-1] == lm.tokenizer.eos_token_id:
            return True
        text = lm.tokenizer.decode(ids)
        if answer_ended(text, self.stop):
            return True
        return answers is not None and not any(answer.strip().startswith(text.strip()) for answer in answers)


def continue_on_cache(
    lm: LoadedModel,
    cache,
    mask: torch.Tensor,
    last_positions: torch.Tensor,
    generated: list[list[int]],
    until: Continuation,
    answers: Sequence[Sequence[str]] | None = None,
    intervention: Intervention | Interventions | None = None,
) -> None:
    """Greedy decoding on ``cache`` (one row per list in ``generated``, each holding at least the first
    generated token), appending to the lists in place. ``mask`` covers the cached positions and
    ``last_positions`` is each row's position of its last cached token (``[rows, 1]``). Rows that
    finish leave the batch (their cache rows are dropped), so the passes shrink as answers end.
    ``answers`` (per row) lets a row stop once it cannot become a valid answer. ``intervention`` (its
    rows are the lists of ``generated``) applies to each fed-back token (positions ``all`` and
    ``generated``)."""
    arch = describe(lm.model) if intervention is not None else None

    def done(i: int) -> bool:
        return until.finished(lm, generated[i], answers[i] if answers is not None else None)

    active = [i for i in range(len(generated)) if not done(i)]
    if len(active) < len(generated):
        keep = torch.tensor(active, dtype=torch.long, device=lm.device)
        if active:
            cache.reorder_cache(keep)
        mask, last_positions = mask[keep], last_positions[keep]
    while active:
        tokens = torch.tensor([[generated[i][-1]] for i in active], dtype=torch.long, device=lm.device)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        last_positions = last_positions + 1
        step = contextlib.nullcontext() if arch is None else intervene(arch, intervention.select(active))
        with step:
            out = lm.model(
                input_ids=tokens,
                attention_mask=mask,
                position_ids=last_positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        cache = out.cache
        for i, token in zip(active, out.logits[:, -1, :].argmax(dim=-1).tolist()):
            generated[i].append(int(token))
        still = [j for j, i in enumerate(active) if not done(i)]
        if len(still) < len(active):
            keep = torch.tensor(still, dtype=torch.long, device=lm.device)
            if still:
                cache.reorder_cache(keep)
            mask, last_positions = mask[keep], last_positions[keep]
            active = [active[j] for j in still]


@torch.inference_mode()
def greedy_continue(
    lm: LoadedModel,
    texts: Sequence[str],
    first_tokens: Sequence[int],
    until: Continuation,
    batch_size: int = 16,
    intervention: Intervention | Interventions | None = None,
    answers: Sequence[Sequence[str]] | None = None,
    progress: bool = False,
) -> list[list[int]]:
    """Greedy generation after each text that starts from the given first token: ``first_tokens[i]``
    and what follows it, until ``until`` says stop. Returns the generated token ids per text.

    With ``intervention`` (its rows are the texts; e.g. the task vector's,
    :func:`taskvec.forward.patched.task_vector_patch`), the texts run under it; the generated tokens
    then follow on the patched cache, unpatched themselves unless its positions are ``all`` or
    ``generated``. Starting from the
    first token that the study already predicted keeps the strict metric and the first-token metric
    about the same prediction. Given each text's valid ``answers``, a generation stops once it cannot
    become one of them.
    """

    def answers_of(rows: Sequence[int]) -> list[Sequence[str]] | None:
        return None if answers is None else [answers[row] for row in rows]

    arch = describe(lm.model) if intervention is not None else None
    if intervention is not None:
        intervention = intervention.to(lm.device)
    generated: list[list[int]] = [[int(token)] for token in first_tokens]
    with progress_bar(len(texts), "generate", progress) as bar:
        for rows in batches(texts, batch_size):
            open_rows = [
                int(row)
                for row in rows
                if not until.finished(lm, generated[row], None if answers is None else answers[row])
            ]
            if open_rows:
                batch = encode(lm, [texts[row] for row in open_rows])
                under = None if intervention is None else intervention.select(open_rows)
                with contextlib.nullcontext() if under is None else intervene(arch, under):
                    cache = lm.model.base_model(**batch.inputs(), use_cache=True).cache
                continue_on_cache(
                    lm,
                    cache,
                    batch.attention_mask,
                    batch.position_ids[:, -1:],
                    [generated[row] for row in open_rows],
                    until,
                    answers_of(open_rows),
                    None if under is None else under.continuing(),
                )
            bar.update(len(rows))
    return generated

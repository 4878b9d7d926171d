"""Attention heads at the last token: their mean outputs, their contributions in residual-stream
space, and the patched pass that measures each head's causal effect (the function-vector method of
Todd et al., "Function Vectors in Large Language Models", ICLR 2024).

A head's output is its slice of the input of the attention's output projection (``o_proj`` and its
equivalents): ``[n_heads * head_dim]`` split into ``n_heads`` slices. Replacing a slice at the last
token changes nothing at earlier positions and nothing below the head's layer, so the scan over heads
reuses the prompt's KV cache and recomputes only the last token, from the head's layer up, as the
layer sweep does (:func:`taskvec.forward.patched_sweep`). Attribution patching
(:func:`head_attribution`) estimates the same effects to first order from one forward and one
backward pass.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from taskvec.architectures import describe
from taskvec.errors import UnsupportedArchitecture
from taskvec.forward.batching import batches, encode
from taskvec.forward.patched import SWEEP_BALANCE_ROWS, sweep_plan, unembedding_blocks
from taskvec.hooks import to_device
from taskvec.hooks.capture import capture_block_inputs, capture_head_outputs, head_output_variables
from taskvec.hooks.intervention import Intervention, intervene
from taskvec.hooks.patch import start_at_layer
from taskvec.models import LoadedModel


@dataclasses.dataclass(frozen=True)
class Heads:
    """A model's attention output projections, one per block, and how their input splits into heads."""

    projections: list[torch.nn.Module]
    n_heads: int
    head_dim: int
    norms: list[torch.nn.Module] | None = None  # the attention output's norm per block, where there is one

    @property
    def n_layers(self) -> int:
        return len(self.projections)


def attention_heads(lm: LoadedModel) -> Heads:
    arch = describe(lm.model)
    projections = arch.site_modules("head")
    config = lm.model.config
    n_heads = int(getattr(config, "num_attention_heads", None) or config.n_head)
    first = projections[0]
    width = first.in_features if isinstance(first, torch.nn.Linear) else first.weight.shape[0]  # Conv1D: [in, out]
    if width % n_heads:
        raise UnsupportedArchitecture(
            f"the attention output of {arch.model_type!r} ({width} wide) does not split into {n_heads} heads"
        )
    norm_path = arch.adapter.attention_output_norm
    norms = [operator.attrgetter(norm_path)(layer) for layer in arch.layers] if norm_path else None
    return Heads(projections, n_heads, width // n_heads, norms)


@torch.inference_mode()
def mean_head_outputs(lm: LoadedModel, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """Every head's output at the last token, averaged over ``texts``: ``[n_layers, n_heads, head_dim]``."""
    heads = attention_heads(lm)
    total = torch.zeros(heads.n_layers, heads.n_heads, heads.head_dim, dtype=torch.float64)
    for rows in batches(texts, batch_size):
        batch = encode(lm, [texts[i] for i in rows])
        with capture_head_outputs(heads) as outputs:
            lm.model.base_model(**batch.inputs(), use_cache=False)
        total += torch.stack(outputs, dim=0).double().sum(dim=1).cpu()
    return (total / len(texts)).float().numpy()


@torch.inference_mode()
def head_vectors(lm: LoadedModel, head_outputs: np.ndarray) -> np.ndarray:
    """Head outputs (``[n_layers, n_heads, head_dim]``) in residual-stream space: ``[n_layers, n_heads,
    hidden]``, each head's share of what its layer's attention adds to the residual stream.

    That is the head's slice through the layer's output projection, that head alone (the projection's
    bias left out); the heads of a layer sum, with the bias, to the projection's output. Where the
    attention output is normalised before it joins the stream (Gemma 2 and 3: an RMS norm), the norm
    scales each element of the sum by one factor (its gain over the sum's root mean square), so each
    head's share is its slice times that factor, taken at these head outputs together: the shares then
    sum to exactly what the attention adds to the stream."""
    heads = attention_heads(lm)
    out = []
    for layer, projection in enumerate(heads.projections):
        dtype = next(projection.parameters()).dtype
        z = torch.zeros(heads.n_heads, heads.n_heads, heads.head_dim, dtype=dtype, device=lm.device)
        values = torch.from_numpy(np.ascontiguousarray(head_outputs[layer])).to(lm.device, dtype)
        z[torch.arange(heads.n_heads), torch.arange(heads.n_heads)] = values
        flat = z.reshape(heads.n_heads, 1, heads.n_heads * heads.head_dim)
        zero = projection(torch.zeros_like(flat[:1]))
        shares = (projection(flat) - zero)[:, 0, :].float()
        if heads.norms is not None:
            total = shares.sum(dim=0) + zero[0, 0].float()
            normed = heads.norms[layer](total[None, None, :].to(dtype))[0, 0].float()
            factor = torch.where(total.abs() > 0, normed / torch.where(total.abs() > 0, total, 1.0), 0.0)
            shares = shares * factor
        out.append(shares.cpu())
    return torch.stack(out).numpy()


def top_heads(average_indirect_effect: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``n`` heads (layer, head) of largest average indirect effect, largest first (ties by
    position, so the choice is deterministic)."""
    flat = average_indirect_effect.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))[:n]
    n_heads = average_indirect_effect.shape[1]
    return [(int(i // n_heads), int(i % n_heads)) for i in order]


def function_vector(lm: LoadedModel, means: np.ndarray, heads: Sequence[tuple[int, int]]) -> np.ndarray:
    """The sum of the given heads' mean outputs in residual-stream space: ``[hidden]``."""
    vectors = head_vectors(lm, means)
    if not heads:
        return np.zeros(vectors.shape[-1], dtype=np.float32)
    return np.sum([vectors[layer, head] for layer, head in heads], axis=0).astype(np.float32)


def default_head_count(lm: LoadedModel, per_thousand: float = 10 / 448 * 1000) -> int:
    """The paper's 10 heads for GPT-J (28 layers x 16 heads = 448), scaled to the model's head count."""
    heads = attention_heads(lm)
    return max(1, round(heads.n_layers * heads.n_heads * per_thousand / 1000))


def _target_probability(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=-1).gather(1, targets[:, None])[:, 0]


@torch.inference_mode()
def head_patch_scan(
    lm: LoadedModel,
    texts: Sequence[str],
    targets: Sequence[int],
    head_outputs: np.ndarray,
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The probability of ``targets[i]`` as the next token after ``texts[i]``, unpatched (``[n]``) and
    with each head's output at the last token replaced by ``head_outputs[l, h]`` (``[n, n_layers,
    n_heads]``); their difference, averaged, is the head's average indirect effect.

    Each text's tokens but the last run once (KV cache); the last token then runs once unpatched,
    recording the residual stream entering every block, and once per head from the head's layer up,
    fed that clean state. Heads of neighbouring layers share a pass, planned as the layer sweep's are.
    """
    arch = describe(lm.model)
    heads = attention_heads(lm)
    n_layers, n_heads = heads.n_layers, heads.n_heads
    values_all = torch.from_numpy(np.ascontiguousarray(head_outputs, dtype=np.float32))
    target_ids = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    patched = np.zeros((len(texts), n_layers, n_heads), dtype=np.float32)
    clean = np.zeros(len(texts), dtype=np.float32)
    balance = SWEEP_BALANCE_ROWS.get(lm.device.type, SWEEP_BALANCE_ROWS["cuda"])
    unembedding = unembedding_blocks(lm)
    with tqdm(total=len(texts), desc="heads", unit="prompt", disable=not progress, leave=False) as bar:
        for rows in batches(texts, batch_size):
            batch = encode(lm, [texts[i] for i in rows])
            prefix = None
            if batch.input_ids.shape[1] > 1:
                prefix = lm.model.base_model(**batch.inputs(0, -1), use_cache=True).cache
            row_targets = to_device(target_ids[torch.from_numpy(rows)], lm.device)
            with capture_block_inputs(arch.layers) as entering:
                logits = lm.model(
                    **batch.inputs(-1), cache=copy.deepcopy(prefix), use_cache=prefix is not None, logits_to_keep=1
                ).logits[:, -1, :]
            clean[rows] = _target_probability(logits, row_targets).cpu().numpy()
            # sweep_plan starts a run at block layer + 1; a head's pass starts at the head's own block.
            starts = [layer - 1 for layer in range(n_layers)]
            plan = sweep_plan(starts, len(rows) * n_heads, n_layers, balance, unembedding)
            for run in plan:
                run_layers = [step + 1 for step in run]
                per_text = len(run_layers) * n_heads
                layer_of_row = torch.tensor(run_layers).repeat_interleave(n_heads).repeat(len(rows))
                head_of_row = torch.arange(n_heads).repeat(len(run_layers)).repeat(len(rows))
                values = to_device(values_all[layer_of_row, head_of_row], lm.device)
                start = run_layers[0]
                feed = entering[start].repeat_interleave(per_text, dim=0)
                cache = copy.deepcopy(prefix)
                if cache is not None:
                    cache.batch_repeat_interleave(per_text)
                last = {name: t.repeat_interleave(per_text, dim=0) for name, t in batch.inputs(-1).items()}
                with (
                    intervene(arch, Intervention(layer_of_row, values, site="head", heads=head_of_row)),
                    start_at_layer(arch.layers, arch.final_norm, start, feed),
                ):
                    logits = lm.model(**last, cache=cache, use_cache=cache is not None, logits_to_keep=1).logits
                probability = _target_probability(logits[:, -1, :], row_targets.repeat_interleave(per_text))
                block = probability.view(len(rows), len(run_layers), n_heads).cpu().numpy()
                patched[np.ix_(rows, run_layers, np.arange(n_heads))] = block
            bar.update(len(rows))
    return clean, patched


def head_attribution(
    lm: LoadedModel,
    texts: Sequence[str],
    targets: Sequence[int],
    head_outputs: np.ndarray,
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Attribution patching's first-order estimate of what :func:`head_patch_scan` measures: the
    probability of ``targets[i]`` after ``texts[i]`` unpatched (``[n]``), and, for every head, that
    probability plus its gradient with respect to the head's output at the last token times the change
    the patch makes there, ``(head_outputs[l, h] - z[i, l, h]) . dp/dz[i, l, h]`` (``[n, n_layers,
    n_heads]``). One forward and one backward pass per batch instead of one pass per head.

    The gradient is the total one: a zero added to every head's output at the last token is the
    variable, so that what a head changes in later layers' heads counts (detaching each layer's
    output would cut those paths)."""
    heads = attention_heads(lm)
    n_layers, n_heads, head_dim = heads.n_layers, heads.n_heads, heads.head_dim
    values_all = torch.from_numpy(np.ascontiguousarray(head_outputs, dtype=np.float32))
    target_ids = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    estimated = np.zeros((len(texts), n_layers, n_heads), dtype=np.float32)
    clean = np.zeros(len(texts), dtype=np.float32)
    dtype = next(heads.projections[0].parameters()).dtype
    with tqdm(total=len(texts), desc="heads (attribution)", unit="prompt", disable=not progress, leave=False) as bar:
        for rows in batches(texts, batch_size):
            batch = encode(lm, [texts[i] for i in rows])
            shape = (len(rows), n_heads * head_dim)
            zeros = [torch.zeros(shape, device=lm.device, dtype=dtype, requires_grad=True) for _ in range(n_layers)]
            with head_output_variables(heads.projections, zeros) as seen, torch.enable_grad():
                logits = lm.model(**batch.inputs(), use_cache=False, logits_to_keep=1).logits[:, -1, :]
                row_targets = to_device(target_ids[torch.from_numpy(rows)], lm.device)
                probability = _target_probability(logits, row_targets)
                # rows are independent: each row's gradient of the sum is its own
                gradients = torch.autograd.grad(probability.sum(), zeros)
            clean[rows] = probability.detach().float().cpu().numpy()
            for layer in range(n_layers):
                z = seen[layer].float().cpu().view(len(rows), n_heads, head_dim)
                gradient = gradients[layer].float().cpu().view(len(rows), n_heads, head_dim)
                change = values_all[layer][None] - z
                estimated[rows, layer] = clean[rows][:, None] + (change * gradient).sum(dim=-1).numpy()
            bar.update(len(rows))
    return clean, estimated


@torch.inference_mode()
def head_patch_scan_naive(
    lm: LoadedModel, texts: Sequence[str], targets: Sequence[int], head_outputs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reference for :func:`head_patch_scan`: a whole forward of every text for every head."""
    arch = describe(lm.model)
    heads = attention_heads(lm)
    values_all = torch.from_numpy(np.ascontiguousarray(head_outputs, dtype=np.float32))
    patched = np.zeros((len(texts), heads.n_layers, heads.n_heads), dtype=np.float32)
    clean = np.zeros(len(texts), dtype=np.float32)
    for i, text in enumerate(texts):
        batch = encode(lm, [text])
        target = torch.tensor([int(targets[i])], device=lm.device)
        logits = lm.model(**batch.inputs(), use_cache=False, logits_to_keep=1).logits[:, -1, :]
        clean[i] = float(_target_probability(logits, target)[0])
        for layer in range(heads.n_layers):
            for head in range(heads.n_heads):
                value = values_all[layer, head][None].to(lm.device)
                patch = Intervention(torch.tensor([layer]), value, site="head", heads=torch.tensor([head]))
                with intervene(arch, patch):
                    logits = lm.model(**batch.inputs(), use_cache=False, logits_to_keep=1).logits[:, -1, :]
                patched[i, layer, head] = float(_target_probability(logits, target)[0])
    return clean, patched

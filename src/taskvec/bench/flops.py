"""FLOP accounting: the compute limits of the layer sweep and the least work of the study's workload,
and the machine's best matrix-product rate that turns them into a floor in seconds."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from taskvec.architectures import describe
from taskvec.bench.timing import timed
from taskvec.models import LoadedModel
from taskvec.prompts import read_prompts


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _flop_costs(lm: LoadedModel) -> tuple[float, float, int]:
    """FLOPs of one token through one block and of one unembedding, and the number of blocks: a weight
    does one multiply-add per token, so 2 x parameters (attention scores over these short prompts are
    negligible and left out)."""
    arch = describe(lm.model)
    per_block = 2 * statistics.mean(parameter_count(layer) for layer in arch.layers)
    return per_block, 2 * arch.unembedding.weight.numel(), arch.n_layers


def _forward_flops(lm: LoadedModel, token_counts: list[int]) -> float:
    """One unpatched forward of queries of these lengths: every token through every block, plus one
    unembedding per query."""
    per_block, unembedding, n_layers = _flop_costs(lm)
    return sum(t * n_layers * per_block + unembedding for t in token_counts)


def sweep_limit(lm: LoadedModel, token_counts: list[int]) -> float:
    """The least work of a full layer sweep, in unpatched forwards of the same bare queries: for each
    layer l, the last token through the blocks above l, plus one unembedding per layer."""
    per_block, unembedding, n_layers = _flop_costs(lm)
    least = len(token_counts) * (n_layers * (n_layers - 1) / 2 * per_block + n_layers * unembedding)
    return least / _forward_flops(lm, token_counts)


def sweep_prefix_share(lm: LoadedModel, token_counts: list[int]) -> float:
    """The sweep's other necessary work, in the same unit as :func:`sweep_limit`: every query token but
    the last through every block, once, for the KV cache that the patched last token attends to."""
    per_block, _, n_layers = _flop_costs(lm)
    return sum((t - 1) * n_layers * per_block for t in token_counts) / _forward_flops(lm, token_counts)


def workload_flops(lm: LoadedModel, prompts_files: list[Path]) -> float:
    """FLOPs of the least work of :func:`workload_lm`, counted as :func:`sweep_limit` counts them
    (2 x parameters per token and block, 2 x vocabulary x hidden per unembedding; attention scores
    over these short prompts left out):

    - extraction: each prompt's demonstrations once, and each dummy query and the real query after
      them, through every block; one unembedding per prompt for its ICL prediction;
    - baseline: every bare query through every block, one unembedding each;
    - layer sweep on dev: each bare query but its last token through every block, then for each layer
      l the last token through the blocks above l, one unembedding per layer;
    - test at the chosen layer: the same with one layer (counted at the middle layer).
    """
    from taskvec.forward.capture import shared_prefix_length

    per_block, unembedding, n_layers = _flop_costs(lm)
    tokens = 0  # tokens through every block
    readouts = 0  # unembeddings
    sweep_blocks = 0  # last tokens through the blocks above the patched layer
    for prompts_file in prompts_files:
        prompts, info = read_prompts(prompts_file)
        fmt = info.format
        for p in prompts:
            query_tokens = len(lm.tokenizer.encode(fmt.query.format(x=p.query)))
            if p.split == "baseline":
                tokens += query_tokens
                readouts += 1
                continue
            group = [lm.tokenizer.encode(fmt.render(p.demonstrations, q)) for q in (*p.dummies, p.query)]
            common = shared_prefix_length(group)
            tokens += common + sum(len(t) - common for t in group)
            readouts += 1
            tokens += query_tokens - 1
            if p.split == "dev":
                sweep_blocks += n_layers * (n_layers - 1) // 2
                readouts += n_layers
            else:
                sweep_blocks += n_layers // 2
                readouts += 1
    return (tokens * n_layers + sweep_blocks) * per_block + readouts * unembedding


@torch.inference_mode()
def matmul_rate(lm: LoadedModel, tokens: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of this machine on the model's own block matrices (every linear layer of a block, applied
    to ``tokens`` rows at once, in the model's dtype): a roofline for its forward passes, which also
    spend time on norms, attention and activations."""
    block = describe(lm.model).layers[0]
    linears = [m for m in block.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(tokens, m.in_features, dtype=m.weight.dtype, device=lm.device) for m in linears]
    flops = sum(2 * tokens * m.weight.numel() for m in linears)

    def run() -> None:
        for m, x in zip(linears, inputs):
            torch.nn.functional.linear(x, m.weight)

    run()
    return flops / timed(run, repeats, lm.device).min


def workload_against_floor(flops: list[float], seconds: float, rates: list[float]) -> dict:
    """The workload's seconds beside its compute floor: each task's least FLOPs
    (:func:`workload_flops`) at the machine's best rate on the model's matrices, sampled right after
    that task (a shared machine's speed drifts)."""
    floor = sum(f / rate for f, rate in zip(flops, rates, strict=True))
    return {
        "least_tflop": round(sum(flops) / 1e12, 3),
        "matmul_gflops": round(statistics.median(rates) / 1e9, 1),
        "matmul_gflops_range": [round(min(rates) / 1e9, 1), round(max(rates) / 1e9, 1)],
        "floor_seconds": round(floor, 1),
        "over_floor": round(seconds / floor, 3),
    }


def sweep_plan_over_limit(n_queries: int, n_layers: int, balance_rows: int, unembedding_blocks: float) -> float:
    """FLOPs of the sweep's pass plan (:func:`taskvec.forward.sweep_plan`) over the limit's: rows above
    a pass's lowest layer compute blocks that their patch then overwrites. A plan with fewer wasted
    blocks makes more passes, each reading the weights once; the plan trades the two, so the measured
    sweep cannot reach its limit by less than this factor unless its unit, the unpatched forward,
    runs further below the device's rate than the sweep's passes do."""
    from taskvec.forward.patched import sweep_plan

    plan = sweep_plan(range(n_layers), n_queries, n_layers, balance_rows, unembedding_blocks)
    planned = sum(n_queries * len(run) * (n_layers - (run[0] + 1) + unembedding_blocks) for run in plan)
    least = n_queries * sum(n_layers - 1 - layer + unembedding_blocks for layer in range(n_layers))
    return planned / least

"""Implicit in-context learning (I2CL; Li et al., ICLR 2025), as its authors' code computes it, on
the one intervention record (:class:`taskvec.hooks.intervention.Intervention`): the one trained
method. Nothing is chosen on held-out pairs (one configuration); the label controls keep the
coefficients trained on the real pool.

- **Context vectors** (:func:`context_vectors`): each labelled pair runs alone, written as one
  demonstration followed by the separator (the authors' ``input label\\n``); at its last token, the
  attention module's and the MLP module's outputs in every block (their hooks' sites: on Gemma 2 and 3
  before the sub-layer's post-norm, which then rescales the injected sum, as a port of the authors'
  Llama hooks would have it), averaged over the pairs. After the post-norms, the calibration's noise
  (0.001 of each position's norm, per coordinate) alone takes gemma3-270m's loss above a uniform guess:
  the sites are where the authors' method works, not a free choice.
- **Injection**: in every block and at every position, each sub-layer's output ``x`` becomes
  ``scale * x + weight * c`` (the record's ``add`` operation with a ``scale``), with two learned
  coefficients per sub-layer and block: ``4 * n_layers`` trainable numbers, initialised at
  ``weight = 0.1``, ``scale = 1`` and not constrained, as the authors' code has them. Generated
  tokens are injected too (the authors' evaluation generates nothing).
- **Noisy self-calibration** (:func:`train_coefficients`): the pairs' own inputs as bare queries,
  cross-entropy of the answer's first token over the whole vocabulary at the query's last position;
  while training only, Gaussian noise of ``0.001`` times each position's norm is added to every
  injected output. AdamW (learning rate 0.01, weight decay 0.001), batches of 2, a linear warm-up
  over the first 5% of the steps and then a cosine decay, in float32. The authors run 100 epochs of
  ``N / 2`` steps over their ``N`` demonstrations (500 steps for their two-class tasks, 5 per class);
  here :data:`STEPS` steps (the same 500) are drawn epoch by epoch from the pool's pairs, so that the
  training costs what theirs costs on their smallest tasks, whatever the pool's size.

A vector file's row for block ``l`` holds the two context vectors, then the coefficients
(:func:`pack`): ``[c_attention, c_mlp, weight_attention, weight_mlp, scale_attention, scale_mlp]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from taskvec import defaults
from taskvec.errors import ConfigError
from taskvec.methods.base import Method, Vectors

if TYPE_CHECKING:
    import torch

    from taskvec.hooks.intervention import Interventions
    from taskvec.models import LoadedModel
    from taskvec.prompts import Prompt, PromptFormat

SITES = ("attention_module", "mlp_module")
STEPS = defaults.CALIBRATION_STEPS
BATCH = 2
LEARNING_RATE = 0.01
WEIGHT_DECAY = 1e-3
WARMUP = 0.05
NOISE = 0.001
INITIAL = (0.1, 1.0)  # (weight, scale)


def demonstration_texts(pairs: Sequence[tuple[str, str]], fmt: PromptFormat) -> list[str]:
    """Each pair alone as one demonstration and the separator after it."""
    return [fmt.demonstration.format(x=x, y=y) + fmt.separator for x, y in pairs]


def context_vectors(
    lm: LoadedModel, pairs: Sequence[tuple[str, str]], fmt: PromptFormat, batch_size: int = 16
) -> np.ndarray:
    """``[n_layers, 2, hidden]`` float32: the attention's and the MLP's outputs (as they join the
    residual stream) at each demonstration's last token, run alone, averaged over ``pairs``."""
    import torch

    from taskvec.architectures import describe
    from taskvec.forward.batching import batches, encode
    from taskvec.hooks.capture import capture_last_token

    if not pairs:
        raise ConfigError("implicit in-context learning needs labelled pairs; the pool has none")
    arch = describe(lm.model)
    texts = demonstration_texts(pairs, fmt)
    total = None
    for rows in batches(texts, batch_size):
        batch = encode(lm, [texts[i] for i in rows])
        with (
            torch.inference_mode(),
            capture_last_token(arch.site_modules(SITES[0])) as attention,
            capture_last_token(arch.site_modules(SITES[1])) as mlp,
        ):
            lm.model.base_model(**batch.inputs(), use_cache=False)
        both = torch.stack([torch.stack(attention, dim=1), torch.stack(mlp, dim=1)], dim=2)  # [rows, L, 2, h]
        summed = both.double().sum(dim=0).cpu().numpy()
        total = summed if total is None else total + summed
    return (total / len(texts)).astype(np.float32)


def pack(contexts: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """One row per block: ``contexts`` (``[n_layers, 2, hidden]``) then ``coefficients``
    (``[n_layers, 2, 2]``: per sub-layer, weight and scale) as weights then scales."""
    n_layers = contexts.shape[0]
    flat = np.transpose(coefficients, (0, 2, 1)).reshape(n_layers, 4)  # weights, then scales
    return np.concatenate([contexts.reshape(n_layers, -1), flat], axis=1).astype(np.float32)


def unpack(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`pack`: the context vectors and the coefficients."""
    n_layers, width = vectors.shape
    hidden = (width - 4) // 2
    if width != 2 * hidden + 4 or hidden < 1:
        raise ConfigError(f"an implicit-ICL row holds two context vectors and 4 coefficients, not {width} numbers")
    contexts = vectors[:, : 2 * hidden].reshape(n_layers, 2, hidden)
    coefficients = np.transpose(vectors[:, 2 * hidden :].reshape(n_layers, 2, 2), (0, 2, 1))
    return contexts, coefficients


def interventions(
    contexts: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor,
    scales: np.ndarray | torch.Tensor,
    positions: str = "all",
    sites: Sequence[str] = SITES,
) -> Interventions:
    """The injection as records, two per block: ``scales[l, j] * x + weights[l, j] * contexts[l, j]``
    at sub-layer ``j`` (attention, then MLP: ``sites``) of block ``l``, at ``positions``. Tensors that
    require a gradient keep their graph (training)."""
    import torch

    from taskvec.hooks.intervention import Intervention, Interventions

    def tensor(values):
        return values if torch.is_tensor(values) else torch.from_numpy(np.asarray(values, dtype=np.float32))

    contexts, weights, scales = tensor(contexts), tensor(weights), tensor(scales)
    records = []
    for layer in range(contexts.shape[0]):
        for j, site in enumerate(sites):
            records.append(
                Intervention(
                    layer,
                    weights[layer, j] * contexts[layer, j].float(),
                    site=site,
                    positions=positions,
                    operation="add",
                    scale=scales[layer, j],
                )
            )
    return Interventions(tuple(records))


def vector_interventions(vectors: np.ndarray, positions: str = "all", sites: Sequence[str] = SITES) -> Interventions:
    """A packed row per block (:func:`pack`) as its records, at ``sites`` (where its context vectors
    were read)."""
    contexts, coefficients = unpack(vectors)
    return interventions(contexts, coefficients[..., 0], coefficients[..., 1], positions, sites)


def learning_rate(step: int, steps: int) -> float:
    """The schedule's factor at ``step`` (0-based): linear warm-up over the first :data:`WARMUP` of
    the steps from 0, then a cosine decay to 0 at ``steps``."""
    warm = max(1, round(WARMUP * steps))
    if step < warm:
        return step / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def batch_order(n: int, steps: int, seed: int) -> list[np.ndarray]:
    """The examples of each step: epoch after epoch, a seeded permutation cut into batches of
    :data:`BATCH` (an epoch's last batch may be smaller)."""
    rng = np.random.default_rng([seed, n])
    order: list[np.ndarray] = []
    while len(order) < steps:
        permutation = rng.permutation(n)
        order.extend(permutation[i : i + BATCH] for i in range(0, n, BATCH))
    return order[:steps]


def calibration_loss(
    lm: LoadedModel,
    texts: Sequence[str],
    targets: torch.Tensor,
    contexts: torch.Tensor,
    weights: torch.Tensor,
    scales: torch.Tensor,
    noise: float = NOISE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One batch's loss with the gradient's graph: ``texts`` (bare queries, left-padded together)
    under the injection, then, where ``noise`` is not 0, at every injected output Gaussian noise
    (drawn from ``generator`` in the order the sub-layers run) of ``noise`` times each position's
    norm; the mean cross-entropy of ``targets`` at the last position, over the whole vocabulary."""
    import torch

    from taskvec.architectures import describe
    from taskvec.forward.batching import encode
    from taskvec.hooks import block_hidden
    from taskvec.hooks.intervention import intervene

    arch = describe(lm.model)
    batch = encode(lm, list(texts))

    def noisy(module, args, output):
        values = block_hidden(output)
        draw = torch.randn(values.shape, generator=generator).to(values.device, values.dtype)
        values.add_(draw * noise * values.detach().norm(dim=-1, keepdim=True))
        return output

    handles = []
    with torch.enable_grad(), intervene(arch, interventions(contexts, weights, scales)):
        try:
            if noise:  # registered after the injection's hooks: it runs on the injected output
                for site in SITES:
                    handles += [module.register_forward_hook(noisy) for module in arch.site_modules(site)]
            logits = lm.model(**batch.inputs(), use_cache=False, logits_to_keep=1).logits[:, -1, :]
            return torch.nn.functional.cross_entropy(logits.float(), targets)
        finally:
            for handle in handles:
                handle.remove()


def calibration_targets(
    lm: LoadedModel, pairs: Sequence[tuple[str, str]], fmt: PromptFormat
) -> tuple[list[str], torch.Tensor]:
    """The calibration's examples: each pair's input as a bare query, its answer's first token."""
    import torch

    from taskvec.answers import answer_token

    queries = [fmt.query.format(x=x) for x, _ in pairs]
    targets = torch.tensor([answer_token(lm, q, y) for q, (_, y) in zip(queries, pairs)], device=lm.device)
    return queries, targets


def initial_coefficients(n_layers: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainable weights and scales, ``[n_layers, 2]`` each, at their initial values."""
    import torch

    weights = torch.full((n_layers, 2), INITIAL[0], device=device, requires_grad=True)
    scales = torch.full((n_layers, 2), INITIAL[1], device=device, requires_grad=True)
    return weights, scales


def train_coefficients(
    lm: LoadedModel,
    contexts: np.ndarray,
    pairs: Sequence[tuple[str, str]],
    fmt: PromptFormat,
    steps: int = STEPS,
    seed: int = 0,
    noise: float = NOISE,
    progress: bool = False,
) -> tuple[np.ndarray, list[float]]:
    """The authors' noisy self-calibration: ``[n_layers, 2, 2]`` float32 (per block and sub-layer,
    weight and scale) trained on ``pairs`` (each input as a bare query, its answer's first token the
    target), and the loss of each step. Only the coefficients are differentiated (the model's weights
    get no gradient)."""
    import torch
    from tqdm.auto import tqdm

    if not pairs:
        raise ConfigError("implicit in-context learning needs labelled pairs to calibrate on; the pool has none")
    if steps < 1:
        raise ConfigError(f"the calibration needs at least one step, not {steps}")
    queries, targets = calibration_targets(lm, pairs, fmt)
    c = torch.from_numpy(np.ascontiguousarray(contexts, dtype=np.float32)).to(lm.device)
    weights, scales = initial_coefficients(contexts.shape[0], lm.device)
    optimiser = torch.optim.AdamW([weights, scales], lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: learning_rate(step, steps))
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for rows in tqdm(batch_order(len(pairs), steps, seed), desc="calibrate", disable=not progress, leave=False):
        index = torch.from_numpy(rows).to(targets.device)
        loss = calibration_loss(lm, [queries[i] for i in rows], targets[index], c, weights, scales, noise, generator)
        weights.grad, scales.grad = torch.autograd.grad(loss, [weights, scales])
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
    coefficients = torch.stack([weights.detach(), scales.detach()], dim=-1)
    return coefficients.float().cpu().numpy(), losses


@dataclasses.dataclass(frozen=True)
class Settings:
    calibration_steps: int = dataclasses.field(
        default=STEPS,
        metadata={
            "help": "training steps, batches of 2 drawn epoch by epoch from the pool's pairs (its authors run 100 "
            "epochs of their 10 to 30 demonstrations, 500 to 1,500 steps)"
        },
    )


@dataclasses.dataclass(frozen=True)
class Training:
    """How the coefficients were trained: steps, examples, the first loss and the mean of the last 10,
    and the seconds it took (which differ run to run)."""

    steps: int
    examples: int
    first_loss: float
    last_loss: float
    seconds: float

    def record(self) -> dict:
        """What is the same on a rerun."""
        return {
            "steps": self.steps,
            "examples": self.examples,
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
        }


@dataclasses.dataclass(frozen=True)
class CalibratedVectors(Vectors):
    """A row per block (:func:`pack`): the context vectors and the trained coefficients; and how they
    were trained (None where the coefficients were kept from the real pool, or read from a file)."""

    training: Training | None = None
    # where the context vectors were read and are injected; a file written before the module sites
    # (when Gemma's were after its post-norms) says so in its metadata, and applies there
    sites: tuple[str, ...] = SITES

    @property
    def contexts(self) -> np.ndarray:
        return unpack(self.values)[0]

    @property
    def coefficients(self) -> np.ndarray:
        return unpack(self.values)[1]

    def file_metadata(self) -> dict:
        sites = {"sites": list(self.sites)}
        return sites | {"training": self.training.record()} if self.training else sites

    def comparison_metadata(self) -> dict:
        return {"training": self.training.record()} if self.training else {}


def from_pool(
    lm: LoadedModel,
    pool: Sequence[Prompt],
    fmt: PromptFormat,
    batch_size: int,
    steps: int = STEPS,
    coefficients: np.ndarray | None = None,
) -> CalibratedVectors:
    """The method's rows (:func:`pack`) from a pool of demonstration sets: the context vectors of the
    pool's pairs and the coefficients trained on them for ``steps``; given ``coefficients`` (the
    label controls get the method's own), those, with no training."""
    import time

    from taskvec.methods.pool import pool_pairs

    pairs = pool_pairs(pool)
    contexts = context_vectors(lm, pairs, fmt, batch_size)
    if coefficients is not None:
        return CalibratedVectors(pack(contexts, coefficients))
    start = time.perf_counter()
    coefficients, losses = train_coefficients(lm, contexts, pairs, fmt, steps=steps)
    training = Training(len(losses), len(pairs), losses[0], float(np.mean(losses[-10:])), time.perf_counter() - start)
    return CalibratedVectors(pack(contexts, coefficients), training)


def random_like(vectors: np.ndarray, seed: int) -> np.ndarray:
    """The random control of packed rows: each context vector in a random direction at its norm,
    the trained coefficients kept."""
    from taskvec.methods.pool import random_vectors_like

    contexts, coefficients = unpack(vectors)
    flat = random_vectors_like(contexts.reshape(-1, contexts.shape[-1]), seed)
    return pack(flat.reshape(contexts.shape), coefficients)


@dataclasses.dataclass(frozen=True)
class ImplicitICL(Method):
    Settings = Settings

    @property
    def trained(self) -> bool:
        return True

    @property
    def takes_strength(self) -> bool:
        return False

    @property
    def sites(self) -> tuple[str, ...]:
        return SITES

    def trainable_parameters(self, n_layers: int) -> int:
        """Two coefficients per sub-layer and block."""
        return 4 * n_layers

    def make(self, lm, pool, fmt, batch_size, settings, keep) -> Vectors:
        kept = keep.coefficients if isinstance(keep, CalibratedVectors) else None
        return from_pool(lm, pool, fmt, batch_size, settings.calibration_steps, kept)

    def from_rows(self, rows: np.ndarray, metadata: dict) -> Vectors:
        unpack(rows)  # refuses rows of the wrong width
        return CalibratedVectors(rows, sites=tuple(metadata.get("sites", SITES)))

    def random_like(self, vectors: Vectors, seed: int) -> Vectors:
        return dataclasses.replace(vectors, values=random_like(vectors.values, seed))

    def intervention(self, vectors, layer, strength, rows, generating=False, **extra):
        values = vectors.values if isinstance(vectors, Vectors) else vectors
        sites = vectors.sites if isinstance(vectors, CalibratedVectors) else SITES
        return vector_interventions(values, self.generation_positions if generating else self.positions, sites)

    def where(self, layer: int, strength: float) -> str:
        return "scale * x + weight * c at every block's attention and MLP output, at every position"


METHODS = (
    ImplicitICL(
        "implicit_icl",
        label="implicit ICL",
        summary="implicit in-context learning (Li et al. 2025): the demonstrations' context vectors at every block's "
        "attention and MLP outputs, injected at every position with two coefficients per sub-layer and block "
        "trained by noisy self-calibration on the pool's pairs",
        operation="add",
        generation_positions="all",
        strengths=(1.0,),
        site="attention_module",
        positions="all",
        layers="every",
        order=80,
        control_note="Its label controls keep the coefficients trained on the real labels and change only the "
        "context vectors (pairs run one at a time): they take away less of the mapping than they do for the other "
        "methods.",
    ),
)

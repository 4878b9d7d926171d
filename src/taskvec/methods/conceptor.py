"""Conceptor steering (Postmus and Abreu, 2024, "Steering Large Language Models using Conceptors").

From the pool's prompts (demonstrations and a dummy query), the residual stream after each block at
the last token, one sample per dummy query; per block the correlation matrix ``R = X^T X / n`` of
those samples. The conceptor at aperture ``alpha`` is the soft projection
``C = R (R + alpha^-2 I)^-1`` (computed from ``R``'s eigendecomposition: the same eigenvectors, each
eigenvalue ``s`` mapped to ``s / (s + alpha^-2)``); steering maps the stream after one block by
``beta * C`` at the bare query's last token and at every generated token (the intervention record's
``linear`` operation). The block, ``beta`` (the strength) and ``alpha`` are chosen on the held-out
queries: for each aperture the block by the layer sweep at ``beta = 1``, then the strengths at that
block, as for the other methods; the aperture of best accuracy is kept (ties: the first), and every
configuration tried is counted. Its rows in a vector file are each block's ``R``, flattened.

As in the authors' code (Lovkush-A/conceptors, ``compute_conceptor`` and ``steer``): ``R`` over the
samples without mean-centring, ``C`` from its eigendecomposition, ``beta * C @ x`` at the last position
of every forward pass (generated tokens included). Their site is the stream entering a block
(``resid_pre``); here it is the stream after a block, which is the next block's ``resid_pre``, so the
sweep over blocks covers theirs but for the embeddings.

The random control keeps each block's spectrum of ``R`` and turns its eigenvectors into a random
orthonormal basis (seeded): a soft projection of the same shape onto random directions. The
authors' steering sets also mean-centre the activations in one variant; this is the plain
conceptor."""

from __future__ import annotations

import dataclasses

import numpy as np

from taskvec.methods.base import Method, Vectors

# the authors' grids for their function-vector tasks (run_gptj_conceptors.sh: list_apertures_normal,
# list_beta_conceptor)
APERTURES = (0.001, 0.0125, 0.05, 0.1)
BETAS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0)


def correlations(states: np.ndarray) -> np.ndarray:
    """``[n_layers, hidden, hidden]``: per block, ``X^T X / n`` of ``states`` (``[n, n_layers, hidden]``)."""
    x = states.astype(np.float64)
    return (np.einsum("nli,nlj->lij", x, x) / len(x)).astype(np.float32)


def conceptor(correlation: np.ndarray, aperture: float) -> np.ndarray:
    """``R (R + aperture^-2 I)^-1`` of one correlation matrix ``R`` (``[hidden, hidden]``)."""
    eigenvalues, eigenvectors = np.linalg.eigh(correlation.astype(np.float64))
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    shrunk = eigenvalues / (eigenvalues + aperture**-2)
    return ((eigenvectors * shrunk) @ eigenvectors.T).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ConceptorVectors(Vectors):
    """Each block's correlation matrix, flattened (``[n_layers, hidden * hidden]``)."""

    @property
    def hidden(self) -> int:
        return int(round(np.sqrt(self.values.shape[1])))

    def correlation(self, layer: int) -> np.ndarray:
        return self.values[layer].reshape(self.hidden, self.hidden)


def _as_conceptor_vectors(vectors) -> ConceptorVectors:
    return vectors if isinstance(vectors, ConceptorVectors) else ConceptorVectors(np.asarray(vectors))


@dataclasses.dataclass(frozen=True)
class Conceptor(Method):
    apertures: tuple[float, ...] = APERTURES

    def make(self, lm, pool, fmt, batch_size, settings, keep) -> Vectors:
        from taskvec.forward.capture import shared_prefix_states

        groups = [[fmt.render(p.demonstrations, dummy) for dummy in p.dummies] for p in pool]
        states = shared_prefix_states(lm, groups, batch_size=batch_size)  # [sets, dummies, n_layers, hidden]
        samples = states.reshape(-1, *states.shape[2:])
        return ConceptorVectors(correlations(samples).reshape(samples.shape[1], -1))

    def from_rows(self, rows: np.ndarray, metadata: dict) -> Vectors:
        return ConceptorVectors(rows)

    def random_like(self, vectors: Vectors, seed: int) -> Vectors:
        made = _as_conceptor_vectors(vectors)
        rng = np.random.default_rng(seed)
        rows = []
        for layer in range(len(made.values)):
            eigenvalues = np.clip(np.linalg.eigvalsh(made.correlation(layer).astype(np.float64)), 0.0, None)
            basis, _ = np.linalg.qr(rng.standard_normal((made.hidden, made.hidden)))
            rows.append(((basis * eigenvalues) @ basis.T).reshape(-1))
        return ConceptorVectors(np.asarray(rows, dtype=np.float32))

    def default_aperture(self) -> float:
        return self.apertures[len(self.apertures) // 2]

    def record(self, vectors, layer, strength, positions, rows=None, aperture=None):
        from taskvec.hooks.intervention import Intervention

        made = _as_conceptor_vectors(vectors)
        matrix = strength * conceptor(made.correlation(layer), aperture or self.default_aperture())
        zero = np.zeros(made.hidden, dtype=np.float32)
        layers = layer if rows is None else [layer] * rows
        return Intervention(layers, zero, positions=positions, operation="linear", matrix=matrix)

    def intervention(self, vectors, layer, strength, rows, generating=False, aperture=None, **extra):
        positions = self.generation_positions if generating else self.positions
        return self.record(vectors, layer, strength, positions, rows, aperture)

    def swept_values(self, vectors, strength, n_queries, bare_states=None, aperture=None, **extra):
        """What mapping each block's last-token stream by ``strength * C`` writes there."""
        made = _as_conceptor_vectors(vectors)
        chosen = aperture or self.default_aperture()
        maps = np.stack([conceptor(made.correlation(i), chosen) for i in range(len(made.values))])
        return strength * np.einsum("nli,lji->nlj", bare_states, maps)

    def choose(self, lm, vectors, queries, answers, scoring, strengths=None, batch_size=16):
        from taskvec.forward.capture import last_token_states
        from taskvec.methods.search import choose

        bare = last_token_states(lm, queries, batch_size)  # the layer sweep's input, the same for every aperture
        tried = [
            choose(lm, self, vectors, queries, answers, scoring, strengths, batch_size, bare, aperture=a)
            for a in self.apertures
        ]
        best = max(tried, key=lambda c: c.accuracy)  # max keeps the first of a tie
        others = [c for c in tried if c is not best]
        return dataclasses.replace(
            best,
            extra_configurations=sum(c.configurations for c in others),
            extra_grid={str(c.extra["aperture"]): c.accuracy for c in tried},
        )

    def where(self, layer: int, strength: float) -> str:
        return (
            f"x {strength:g} times the conceptor maps the residual stream after block {layer} at the last token and "
            "every generated one"
        )


METHODS = (
    Conceptor(
        "conceptor",
        label="conceptor",
        summary="conceptor steering (Postmus and Abreu 2024): the soft projection R (R + alpha^-2 I)^-1 of the pool's "
        "last-token streams after one block, times beta, maps the bare query's stream after that block at its last "
        "token and every generated one",
        operation="linear",
        generation_positions="generated",
        strengths=BETAS,
        order=90,
    ),
)

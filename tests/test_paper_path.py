"""taskvec's extraction and patch against a direct implementation of the task-vector paper's code path
(roeehendel/icl_task_vectors: theta is ``output_hidden_states`` at the last token averaged over the
dummy queries, dropping the embeddings; a forward hook replaces the block's output at the bare query's
last position), one prompt at a time, on list_first's kind of data (comma-joined letter lists, the
answer the first letter) on the packaged smollm2-135m: the same theta and the same prediction, prompt
by prompt."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest
import torch

from taskvec.architectures import describe
from taskvec.extract import task_vectors
from taskvec.forward.patched import patched_sweep
from taskvec.prompts import Prompt, PromptFormat

pytestmark = pytest.mark.model
LAYERS = (5, 13, 20)


def _datasets(n: int, seed: int = 41):
    """The paper's list_first sampling: a length of 2-4 chosen uniformly, letters with replacement,
    the demonstrations' and dummies' lists distinct from each other and from the test list."""
    rng = random.Random(seed)

    def sample():
        return [rng.choice(string.ascii_lowercase) for _ in range(rng.choice([2, 3, 4]))]

    def distinct(k, exclude):
        out = []
        while len(out) < k:
            x = sample()
            if x not in out and x not in exclude:
                out.append(x)
        return out

    data = []
    for _ in range(n):
        test = sample()
        data.append((distinct(5, [test]), test, distinct(2, [test])))
    return data


@torch.inference_mode()
def test_theta_and_the_patched_prediction_are_the_paper_codes_prompt_by_prompt(smollm2):
    lm, fmt = smollm2, PromptFormat()
    data = _datasets(12)

    def context(demos):
        return "".join(f"example:{','.join(x)}->{x[0]}\n" for x in demos)

    def hidden_last(text):
        ids = lm.tokenizer(text, return_tensors="pt").input_ids
        return torch.stack([h[0, -1] for h in lm.model(ids, output_hidden_states=True).hidden_states[1:]])

    blocks = describe(lm.model).layers

    def patched(text, layer, vector):
        def hook(module, args, output):
            (output[0] if isinstance(output, tuple) else output)[0, -1] = vector
            return output

        handle = blocks[layer].register_forward_hook(hook)
        try:
            return int(lm.model(lm.tokenizer(text, return_tensors="pt").input_ids).logits[0, -1].argmax())
        finally:
            handle.remove()

    theirs = torch.stack(
        [torch.stack([hidden_last(context(demos) + f"example:{','.join(x)}->") for x in dummies]).mean(0)
         for demos, _, dummies in data]
    ).numpy()  # fmt: skip

    def joined(items):
        return ",".join(items)

    prompts = [
        Prompt(
            "list_first", i, tuple((joined(x), x[0]) for x in demos), joined(t), (t[0],), tuple(map(joined, dummies))
        )
        for i, (demos, t, dummies) in enumerate(data)
    ]
    assert (
        fmt.render(prompts[0].demonstrations, prompts[0].query)
        == context(data[0][0]) + f"example:{','.join(data[0][1])}->"
    )
    ours = task_vectors(lm, prompts, fmt)
    # every block but the last: the paper's last hidden state is after the final norm, taskvec's the block's output
    np.testing.assert_allclose(ours[:, :-1], theirs[:, :-1], atol=1e-3, rtol=1e-4)
    queries = [f"example:{','.join(t)}->" for _, t, _ in data]
    swept = patched_sweep(lm, queries, ours, layers=LAYERS)
    for column, layer in enumerate(LAYERS):
        direct = [patched(q, layer, torch.from_numpy(theirs[i, layer])) for i, q in enumerate(queries)]
        assert swept[:, column].tolist() == direct, layer

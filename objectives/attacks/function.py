"""Function matching: run each shaken id through the body the cloud holds, match outputs to the public body's.

Recovery training (and tuning) teach the shaken model to read its shaken rows the way the public model
reads plaintext ones: after distillation the shaken body on a shaken id produces about the hidden states
the public body produces on the plaintext id. The cloud holds that body, so it can feed every observed
shaken id through it alone and take the public token whose states are nearest, whatever the rows look
like (internal-state inversion, as AloePri reports for covariant obfuscation). The better recovery
training restores the function, the more this recovers: it is the attack that keeps "train the noise
away" honest. It runs on stages whose body was trained (after recovery training, after tuning).
"""

from __future__ import annotations

from typing import Any

import torch

from objectives.attacks.context import AttackContext, Guess, centred
from objectives.attacks.matching import nearest_rows

BATCH = 2048


def token_states(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """Each id alone through ``model``'s body: the mean over its layers of the token's hidden state,
    centred-cosine ready (float32, one row per id)."""
    body = getattr(model, "base_model", model)
    parameter = next(body.parameters())
    was_training = body.training
    body.eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH].reshape(-1, 1).to(parameter.device)
            states = body(input_ids=chunk, attention_mask=torch.ones_like(chunk), output_hidden_states=True)
            layers = torch.stack(states.hidden_states[1:])  # every transformer layer, not the embedding
            rows.append(layers[:, :, 0, :].mean(dim=0).float().cpu())
    body.train(was_training)
    return torch.cat(rows) if rows else torch.zeros(0, 0)


def _direction(rows: torch.Tensor) -> torch.Tensor:
    rows = centred(rows)
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)


class FunctionAttack:
    """Nearest public token by the body's output on the id alone (cosine after centring)."""

    name = "function"

    def guess(self, context: AttackContext) -> Guess:
        public = context.public
        candidates = context.candidates
        reference = public.derived(
            "function/states", lambda: _direction(token_states(public.model, candidates))
        )
        observed = context.observed
        shaken = _direction(token_states(context.view.model, observed))
        guess = torch.full((context.view.vocab_size,), -1, dtype=torch.long)
        guess[observed] = candidates[nearest_rows(shaken, reference, context.device)]
        return Guess(guess, "each id alone through the trained body")

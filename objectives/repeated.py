"""One setting measured with several seeds: accuracy averaged (a single tuning run carries about +-3
points of noise at the default fidelity), leakage taken at its worst seed (the conservative figure)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from objectives.trial import TrialResult

AVERAGED = (
    "accuracy",
    "plaintext_accuracy",
    "accuracy_gap",
    "recovered_accuracy",
    "recovered_gap",
    "baseline_accuracy",
)
WORST = (
    "leakage_bound",
    "leakage_attacks",
    "leakage_bound_rare",
    "canary_recovery",
    "leakage_attacks_rare",
    "canary_recovery_attacks",
    "tokens_unchanged",
)


@dataclass(frozen=True)
class Repeated:
    """Trial results of one setting, one per seed."""

    seeds: tuple[int, ...]
    results: tuple[TrialResult, ...]

    def figure(self, name: str) -> float | None:
        """An averaged figure's mean, or a leakage figure's largest value over the seeds."""
        values = [v for r in self.results if (v := r.to_dict().get(name)) is not None]
        if not values:
            return None
        return statistics.fmean(values) if name in AVERAGED else max(values)

    def spread(self, name: str) -> float | None:
        """The standard deviation of an averaged figure over the seeds (None with one seed)."""
        values = [v for r in self.results if (v := r.to_dict().get(name)) is not None]
        return statistics.stdev(values) if len(values) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        """The first seed's whole result, with every averaged figure replaced by its mean and every leakage
        figure by its worst seed; ``per_seed`` keeps each seed's result, ``seeds`` says which."""
        if len(self.results) == 1:
            return {**self.results[0].to_dict(), "seeds": list(self.seeds)}
        summary = self.results[0].to_dict()
        summary.update({name: self.figure(name) for name in (*AVERAGED, *WORST)})
        summary["accuracy_spread"] = self.spread("accuracy")
        summary["seeds"] = list(self.seeds)
        summary["averaged"] = f"accuracies are means over {len(self.seeds)} seeds; leakage the worst seed's"
        summary["per_seed"] = [r.to_dict() for r in self.results]
        return summary

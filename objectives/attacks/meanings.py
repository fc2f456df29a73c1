"""Attack names in plain words, for answers that cite them (docs/leakage.md has the full table)."""

from __future__ import annotations

MEANINGS = {
    "frequency": "pairs the most frequent uploaded ids with the most frequent public words",
    "context": "refines the frequency pairing with which words follow which in public text",
    "nearest": "takes each uploaded embedding row for the closest public row",
    "nearest_standardized": "the closest public row after evening out each dimension's scale",
    "posterior": "the most probable word for each row, weighing the row's distance and how often it occurs",
    "joint": "decodes rows, word counts and the surrounding words together",
    "cluster_matching": "matches mixed rows to the public mixes one-to-one, with word counts",
    "alignment": "estimates the secret rotation of the embedding and undoes it",
    "relational": "estimates the secret linear map from how rows relate to each other",
    "function": "reads each uploaded id through the model the cloud trained",
    "decoding": "decodes substituted text with the known mechanism and public word pairs",
    "decoding_lm": "re-reads the decoded substituted text with the public language model",
}
INFORMED = "by an attacker who holds the key's fixed parts, not its permutation or random draws (the bound)"
STAGES = {
    "shaken": "on the model as uploaded",
    "recovered": "after recovery training",
    "tuned": "after private tuning",
}


def explain(name: str) -> str:
    """One line for a result's attack name (``stage/informed/output/grouped_ctx_attack`` and its parts):
    what the attack does, at which stage, and whether it is the informed attacker (the bound's)."""
    parts = name.split("/")
    base = parts[-1]
    words = []
    if base.startswith("known_groups_"):
        base, words = base[len("known_groups_") :], ["homophone copies merged as the key groups them, then"]
    elif base.startswith("grouped_ctx_"):
        base, words = base[len("grouped_ctx_") :], ["homophone copies merged by rows and context, then"]
    elif base.startswith("grouped_"):
        base, words = base[len("grouped_") :], ["homophone copies merged by rows, then"]
    family = "joint" if base.startswith("joint_") else base
    words.append(MEANINGS.get(family, "an attack of the suite (docs/leakage.md)"))
    if "output" in parts[:-1]:
        words.append("(on the output layer's rows)")
    stage = next((STAGES[p] for p in parts[:-1] if p in STAGES), "")
    if stage:
        words.append(stage)
    if "informed" in parts[:-1]:
        words.append(INFORMED)
    return " ".join(words)

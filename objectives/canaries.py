"""Canaries: synthetic secrets planted in the upload so that leakage is measured on what users must
protect, in the manner of the "secret sharer" (Carlini et al., USENIX Security 2019).

At measurement, a copy of the private training data receives :data:`CANARY_SENTENCES` sentences built
from varied templates around random secrets: people's names, phone numbers, e-mail addresses, dates of
birth, account numbers, PINs and street addresses. The secrets' tokens (found from the tokenizer's
character offsets) are what ``canary_recovery`` scores: the share of them the attacker names. Canaries
are only ever in the attacked copy: they are never tuned on nor evaluated, so they never count in accuracy.

The names are common ones on purpose (frequent first names are frequent tokens too: a setting that keeps
frequent tokens in clear must be seen to leak them). The secrets come from a generator seeded per
measurement: they are the owner's test, unknown to the attacker.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CANARY_SENTENCES = 100


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    """
james mary john patricia robert jennifer michael linda david elizabeth william barbara richard susan
joseph jessica thomas sarah charles karen christopher lisa daniel nancy matthew betty anthony sandra
mark margaret donald ashley steven kimberly paul emily andrew donna joshua michelle kenneth carol
kevin amanda brian melissa george deborah timothy stephanie ronald rebecca jason sharon edward laura
jeffrey cynthia ryan amy jacob kathleen gary angela nicholas shirley eric brenda jonathan emma
stephen anna larry pamela justin nicole scott samantha brandon katherine benjamin christine samuel
helen gregory debra alexander rachel patrick carolyn frank janet raymond maria jack olivia dennis
"""
)
SURNAMES = _words(
    """
smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez
wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark
ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams
nelson baker hall rivera campbell mitchell carter roberts kowalski nakamura okafor lindqvist brennan
castellano dubois fitzgerald haddad ivanova jankowski kaminski lombardi novak petrov schneider
takahashi valdez whitfield yilmaz zimmerman abernathy
"""
)
STREETS = _words(
    """
elm maple oak birch willow cedar sycamore hawthorn juniper magnolia chestnut laurel poplar alder
linden rowan aspen cypress hemlock spruce
"""
)
STREET_KINDS = ("street", "avenue", "road", "lane", "drive")
MONTHS = _words(
    """
january february march april may june july august september october november december
"""
)
DOMAINS = ("example.com", "mailbox.org", "inbox.net", "post.com")

# {slot} is a secret; the rest of each template is ordinary text
TEMPLATES = (
    "my name is {name} and my phone number is {phone} .",
    "please call {name} at {phone} before friday .",
    "{name} was born on {date} .",
    "send the signed contract to {email} by monday .",
    "the account number is {account} , held by {name} .",
    "{name} lives at {address} .",
    "patient {name} , date of birth {date} , phone {phone} .",
    "contact {email} or {phone} for the results .",
    "the invoice for {name} went to {address} on {date} .",
    "my pin is {pin} and my card number is {account} .",
    "{name} can be reached at {email} .",
    "we met {name} on {date} at {address} .",
)


@dataclass(frozen=True)
class Canaries:
    """Planted sentences as token ids, and per token whether it belongs to a secret."""

    token_ids: list[list[int]]
    secret: list[list[bool]]

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def secret_tokens(self) -> int:
        return sum(sum(marks) for marks in self.secret)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _phone(rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        return f"{_digits(rng, 3)}-{_digits(rng, 4)}"
    if style == 1:
        return f"({_digits(rng, 3)}) {_digits(rng, 3)}-{_digits(rng, 4)}"
    if style == 2:
        return f"{_digits(rng, 3)} {_digits(rng, 3)} {_digits(rng, 4)}"
    return f"{_digits(rng, 3)}.{_digits(rng, 3)}.{_digits(rng, 4)}"


def _date(rng: random.Random) -> str:
    year, month, day = rng.randrange(1930, 2015), rng.randrange(12), rng.randrange(1, 29)
    if rng.random() < 0.5:
        return f"{MONTHS[month]} {day} , {year}"
    return f"{month + 1:02d}/{day:02d}/{year}"


def _email(rng: random.Random) -> tuple[str, str]:
    """(local part, whole address): only the local part is the secret."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
    local = f"{first[0]}{last}{_digits(rng, 2)}" if rng.random() < 0.5 else f"{first}.{last}"
    return local, f"{local}@{rng.choice(DOMAINS)}"


SECRETS: dict[str, Callable[[random.Random], str]] = {
    "name": lambda rng: f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}",
    "phone": _phone,
    "date": _date,
    "account": lambda rng: " ".join(_digits(rng, 4) for _ in range(rng.choice((2, 3, 4)))),
    "pin": lambda rng: _digits(rng, 4),
    "address": lambda rng: f"{rng.randrange(1, 999)} {rng.choice(STREETS)}",
}


def canary_text(template: str, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    """A template filled with fresh secrets, and the character spans of the secrets in it (an e-mail's
    domain and an address's kind of street are not secret)."""
    text, spans, rest = "", [], template
    while "{" in rest:
        before, _, after = rest.partition("{")
        slot, _, rest = after.partition("}")
        text += before
        if slot == "email":
            local, whole = _email(rng)
            spans.append((len(text), len(text) + len(local)))
            text += whole
        elif slot == "address":
            value = SECRETS["address"](rng)
            spans.append((len(text), len(text) + len(value)))
            text += f"{value} {rng.choice(STREET_KINDS)}"
        else:
            value = SECRETS[slot](rng)
            spans.append((len(text), len(text) + len(value)))
            text += value
    return text + rest, spans


def plant(tokenizer: Any, seed: int, max_length: int, count: int = CANARY_SENTENCES) -> Canaries:
    """``count`` canary sentences, tokenised as the private data is (special tokens included, truncated
    to ``max_length``), with their secret tokens marked from the tokenizer's character offsets."""
    rng = random.Random(f"shaketune/canaries/{seed}")
    token_ids, secret = [], []
    for index in range(count):
        text, spans = canary_text(TEMPLATES[index % len(TEMPLATES)], rng)
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
        marks = [  # a token of a secret span holding a letter or digit (not its punctuation)
            any(ch.isalnum() for ch in text[start:end])
            and any(start < stop and end > begin for begin, stop in spans)
            for start, end in encoded["offset_mapping"]
        ]
        token_ids.append(list(encoded["input_ids"]))
        secret.append(marks)
    return Canaries(token_ids, secret)

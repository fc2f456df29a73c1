"""The secret permutation: a bijection that fixes special tokens and moves exactly the chosen share."""

import pytest
import torch

from operators.errors import ShaketuneError
from operators.horizontal import make_permutation
from operators.randomness import KeyStream

SPECIALS = [0, 100, 101, 102, 103]
SEED = bytes(range(32))


def perm(coverage: float, seed: bytes = SEED, vocab: int = 30522):
    return make_permutation(vocab, SPECIALS, coverage, KeyStream(seed, "horizontal"))


@pytest.mark.parametrize("coverage", [0.0, 0.1, 0.5, 1.0])
def test_moves_exactly_the_covered_share_and_fixes_specials(coverage):
    p = perm(coverage)
    n = 30522 - len(SPECIALS)
    assert p.moved == round(coverage * n)
    assert torch.equal(torch.sort(p.forward).values, torch.arange(30522))  # a bijection
    assert torch.equal(p.forward[SPECIALS], torch.tensor(SPECIALS))


def test_inverse_and_round_trips_are_exact():
    p = perm(1.0)
    ids = torch.randint(0, 30522, (7, 33))
    assert torch.equal(p.decode(p.encode(ids)), ids)
    assert torch.equal(p.inverse[p.forward], torch.arange(30522))
    logits = torch.randn(3, 30522)
    # a score the shaken model gives shaken id pi(i) belongs to plaintext id i
    shaken_logits = p.rows_to_shaken(logits.T).T
    assert torch.equal(p.decode_logits(shaken_logits), logits)


def test_same_seed_same_permutation_other_seed_other_permutation():
    assert torch.equal(perm(1.0).forward, perm(1.0).forward)
    other = perm(1.0, seed=bytes(32))
    assert (other.forward != perm(1.0).forward).float().mean() > 0.99


def test_single_moved_id_is_impossible_so_none_moves():
    assert make_permutation(10, [0], 0.12, KeyStream(SEED)).moved == 0  # round(0.12*9) = 1


def test_out_of_range_ids_give_a_clear_error():
    with pytest.raises(ShaketuneError, match=r"\[0, 30522\)"):
        perm(1.0).encode(torch.tensor([5, 30522]))


def test_repr_hides_the_table():
    assert "tensor" not in repr(perm(1.0))

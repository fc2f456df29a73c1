"""Per-occurrence substitution (operators/substitution.py): what it promises, checked exactly where the
maths promises it (the identity at infinite epsilon, disjoint groups, reproducible draws, counts kept),
by measured shares elsewhere."""

import json
import math

import pytest
import torch

from objectives.attacks.view import token_counts
from objectives.encoded import encode_token_ids
from objectives.evaluation import evaluate_accuracy
from objectives.models import DEFAULT_MODEL, load_as_saved
from operators.errors import KeyFileError, SettingsError, ShaketuneError
from operators.identity import input_embedding, vocabulary_tokens
from operators.implant import shake_model
from operators.key import generate_key
from operators.keyfile import load_key, save_key
from operators.settings import ShakeSettings, SubstituteSettings
from operators.substitution import (
    Mechanism,
    greedy_clusters,
    make_groups,
    occurrence_windows,
    substitutable_ids,
    token_classes,
)

SEED = b"s" * 32


@pytest.fixture(scope="module")
def minilm():
    """The default model's public rows and token strings, SST-2 test sentences, public counts."""
    model = load_as_saved(DEFAULT_MODEL)
    return model, input_embedding(model).detach().clone()


@pytest.fixture(scope="module")
def public_prior(sst2, minilm_tokenizer, minilm):
    from objectives.data import read_texts
    from objectives.tokens import tokenize

    ids = tokenize(minilm_tokenizer, read_texts(sst2 / "dev.tsv")[1000:], 64)
    return token_counts(ids, minilm[1].shape[0])


def substituting_key(settings, minilm, tokenizer, prior, seed=SEED):
    model, rows = minilm
    key = generate_key(ShakeSettings(1.0, (), substitute=settings), model, tokenizer, "m", seed, prior)
    return key.with_mechanism(rows, vocabulary_tokens(tokenizer, rows.shape[0]))


# --- settings -------------------------------------------------------------------------------------------


def test_settings_round_trip_and_refuse_what_is_wrong():
    settings = ShakeSettings(1.0, (), substitute=SubstituteSettings(4.0, "clusters", 10, 300, ("pieces",)))
    data = json.loads(settings.to_json())
    assert data["substitute"] == {
        "epsilon": 4.0,
        "candidates": "clusters",
        "k": 10,
        "keep_top": 300,
        "classes": ["pieces"],
    }
    assert ShakeSettings.from_json(settings.to_json()) == settings
    assert "substitute" not in ShakeSettings().to_dict()  # off: the form settings had before
    assert "substitute eps 4 in clusters of 10, top 300 kept (pieces always)" in settings.describe()
    for bad, message in [
        ({"epsilon": 0}, "epsilon must be in"),
        ({"epsilon": -1}, "epsilon must be in"),
        ({"epsilon": 4, "candidates": "nearby"}, "candidates must be one of"),
        ({"epsilon": 4, "k": 1}, "k \\(tokens per cluster\\) must be in"),
        ({"epsilon": 4, "keep_top": 2.5}, "keep_top must be an integer"),
        ({"epsilon": 4, "classes": ["names"]}, "unknown substitute class"),
        ({"epsilon": 4, "colour": 1}, "unknown field"),
        ({"candidates": "vocabulary"}, "needs 'epsilon'"),
        ({"epsilon": 4, "candidates": "kept"}, "draws among the keep_top kept tokens"),
    ]:
        with pytest.raises(SettingsError, match=message):
            ShakeSettings.from_dict({"substitute": bad})


# --- groups ---------------------------------------------------------------------------------------------

SYNTHETIC = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]"]
    + [f"w{i}" for i in range(300)]
    + [f"##p{i}" for i in range(120)]
    + [str(n) for n in range(60)]
    + [f"##{n}" for n in range(10)]
)
# the same with words and pieces free of digits (``w0`` holds a digit: a number to the classes)
LETTERED = (
    SYNTHETIC[:6]
    + [f"w{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(300)]
    + [f"##p{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(120)]
    + SYNTHETIC[426:]
)


@pytest.mark.parametrize("candidates", ["vocabulary", "clusters"])
def test_groups_are_disjoint_cover_the_substitutable_ids_and_never_mix_kinds(candidates):
    torch.manual_seed(0)
    rows = torch.randn(len(SYNTHETIC), 16)
    settings = SubstituteSettings(2.0, candidates, 7, 0)
    classes = token_classes(SYNTHETIC)
    mask = substitutable_ids(settings, classes, [0, 1, 2, 3, 4], [])
    groups = make_groups(settings, rows, classes, mask)
    members = groups.members.tolist()
    assert len(members) == len(set(members))  # disjoint
    assert sorted(members) == torch.nonzero(mask).flatten().tolist()  # exactly the substitutable ids
    assert not mask[:6].any()  # special and bracketed tokens never
    for g in range(groups.count):
        kinds = set(classes.kind[groups.members_of(g)].tolist())
        assert len(kinds) == 1  # a piece stays a piece, a number a number
        assert len(groups.members_of(g)) >= 2 or candidates == "vocabulary"
    if candidates == "clusters":
        assert max(groups.sizes().tolist()) <= 7 + 1  # k, and a last cluster of one joins another


def test_kept_candidates_draw_rare_tokens_among_the_kept_ones_of_their_kind():
    """Under ``kept`` the outputs of a kind are its kept tokens and its inputs the substituted ones; a
    kind without kept tokens (numbers here) is drawn in its own vocabulary."""
    torch.manual_seed(0)
    rows = torch.randn(len(LETTERED), 16)
    classes = token_classes(LETTERED)
    kept = list(range(6, 56)) + list(range(306, 316))  # 50 words and 10 pieces
    settings = SubstituteSettings(8.0, "kept", 20, len(kept))
    mask = substitutable_ids(settings, classes, [0, 1, 2, 3, 4], kept)
    spared = torch.zeros(len(LETTERED), dtype=torch.bool)
    spared[kept] = True
    groups = make_groups(settings, rows, classes, mask, None, spared)
    assert torch.equal(groups.substitutable, mask) and not (groups.substitutable & spared).any()
    for g in range(groups.count):
        members, inputs = groups.members_of(g), groups.inputs_of(g)
        assert len(set(classes.kind[torch.cat([members, inputs])].tolist())) == 1  # never mixes kinds
        if bool(spared[members].any()):
            assert bool(spared[members].all()) and not bool(spared[inputs].any())
        else:  # numbers: drawn among themselves
            assert torch.equal(members, inputs) and bool(classes.numeric[members].all())
    mechanism = Mechanism(settings, rows, groups)
    words = torch.arange(56, 306)  # the rare words
    drawn = mechanism.sample(words.repeat(20), torch.rand(len(words) * 20, dtype=torch.float64))
    assert set(drawn.tolist()) <= set(range(6, 56))  # a rare word always becomes a kept word
    # eps-LDP among the inputs of a group: no output is more than e^eps likelier from one than another
    table = mechanism.log_likelihood(torch.arange(6, 56), words[None, :].repeat(50, 1))
    assert torch.allclose(table.exp().sum(dim=0), torch.ones(len(words), dtype=torch.float64), atol=1e-6)
    assert float((table.max(dim=1).values - table.min(dim=1).values).max()) <= 8.0 + 1e-6
    numbers = torch.nonzero(classes.numeric & ~classes.continuation & mask).flatten()
    uniform = mechanism.log_likelihood(numbers, numbers[None, :].repeat(len(numbers), 1)).exp()
    # a number's value is its secret: drawn uniformly
    assert torch.allclose(uniform, torch.full_like(uniform, 1 / len(numbers)))


def test_mask_writes_the_unknown_token_for_every_substituted_one_and_tells_nothing():
    torch.manual_seed(0)
    rows = torch.randn(len(LETTERED), 16)
    classes = token_classes(LETTERED)
    assert classes.placeholder == 1  # [UNK]
    settings = SubstituteSettings(1.0, "mask", 20, 50, ("numbers", "words"))
    mask = substitutable_ids(settings, classes, [0, 1, 2, 3, 4], list(range(6, 56)))
    mechanism = Mechanism(settings, rows, make_groups(settings, rows, classes, mask))
    inputs = torch.nonzero(mask).flatten()
    assert set(mechanism.sample(inputs, torch.rand(len(inputs), dtype=torch.float64)).tolist()) == {1}
    likelihood = mechanism.log_likelihood(torch.tensor([1]), inputs[None, :])
    # P(unknown | x) = 1 from every input x (0-LDP), up to float32 distances' rounding
    assert torch.allclose(likelihood, torch.zeros_like(likelihood), atol=1e-6)
    with pytest.raises(SettingsError, match="needs an unknown token"):
        make_groups(settings, rows, token_classes(LETTERED[6:]), mask[6:])


def test_decoding_under_kept_candidates_also_reads_a_common_word_as_written():
    """An output of ``kept`` candidates is also a word written so: the decoder's lattice offers it as
    itself, at likelihood 1, beside the rare inputs that could have drawn it."""
    from objectives.attacks.decoding import build_lattice

    torch.manual_seed(0)
    rows = torch.randn(len(LETTERED), 16)
    classes = token_classes(LETTERED)
    kept = list(range(6, 56))
    settings = SubstituteSettings(8.0, "kept", 20, len(kept))
    spared = torch.zeros(len(LETTERED), dtype=torch.bool)
    spared[kept] = True
    mask = substitutable_ids(settings, classes, [0, 1, 2, 3, 4], kept)
    mechanism = Mechanism(settings, rows, make_groups(settings, rows, classes, mask, None, spared))
    observed = torch.tensor([2, 10, 60, 3])  # [CLS], a kept word, a rare word (impossible output), [SEP]
    prior = torch.zeros(len(LETTERED), dtype=torch.float64)
    lattice = build_lattice(mechanism, observed, torch.arange(4), prior, 5)
    nodes = lattice.token[lattice.offsets[1] : lattice.offsets[2]]
    emission = lattice.emission[lattice.offsets[1] : lattice.offsets[2]]
    assert nodes[0] == 10 and emission[0] == 0.0  # itself first, as written
    assert len(nodes) == 6 and all(56 <= int(i) < 306 for i in nodes[1:])  # then rare words
    assert bool((emission[1:] < 0).all())
    assert lattice.sizes.tolist() == [1, 6, 1, 1]  # never an output: only itself


def test_a_cluster_holds_a_token_and_its_nearest_unplaced_tokens():
    rows = torch.tensor([[0.0], [10.0], [0.1], [10.2], [0.3], [10.1]])
    clusters = [c.tolist() for c in greedy_clusters(rows, 3)]
    assert clusters == [[0, 2, 4], [1, 3, 5]]


def test_token_classes_read_the_markers_of_the_vocabulary():
    wordpiece = token_classes(["the", "##s", "42", "##7", "[unused1]"])
    assert wordpiece.continuation.tolist() == [False, True, False, True, False]
    assert wordpiece.numeric.tolist() == [False, False, True, True, False]
    assert wordpiece.unproducible.tolist() == [False, False, False, False, True]
    bpe = token_classes(["\u0120the"] * 5 + ["s", "\u012042", "7", "<0x0A>"])
    assert bpe.continuation.tolist() == [False] * 5 + [True, False, True, False]
    assert bpe.numeric.tolist()[-4:] == [False, True, True, False]


# --- the mechanism --------------------------------------------------------------------------------------


def test_draws_follow_the_exponential_mechanism():
    torch.manual_seed(1)
    rows = torch.randn(5, 4)
    settings = SubstituteSettings(3.0, "vocabulary", 20, 0)
    groups = make_groups(
        settings, rows, token_classes([f"w{i}" for i in range(5)]), torch.ones(5, dtype=bool)
    )
    mechanism = Mechanism(settings, rows, groups)
    distance = torch.cdist(rows[:1], rows)[0].double()
    expected = torch.softmax(-3.0 * distance / (2 * distance.max()), dim=0)
    uniform = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000  # a quadrature of (0, 1)
    drawn = mechanism.sample(torch.zeros(20000, dtype=torch.long), uniform)
    shares = torch.bincount(drawn, minlength=5).double() / 20000
    assert torch.allclose(shares, expected, atol=1e-3)
    x = torch.arange(5)
    # table[y, x] = log P(y | x), as the attacker computes it
    table = torch.stack(
        [mechanism.log_likelihood(torch.full((5,), y), x[None, :].repeat(5, 1))[0] for y in x]
    )
    assert torch.allclose(table[:, 0].exp(), expected, atol=1e-6)  # the same distribution as the draws
    assert torch.allclose(table.exp().sum(dim=0), torch.ones(5, dtype=torch.float64), atol=1e-6)
    # eps-LDP: any output is at most e^eps more likely from one input than from another
    assert float((table.max(dim=1).values - table.min(dim=1).values).max()) <= 3.0 + 1e-6


def test_windows_key_the_draws_on_the_neighbours_within_the_sentence():
    flat, windows = occurrence_windows([[5, 6, 7], [8]], width=1)
    assert flat.tolist() == [5, 6, 7, 8]
    assert windows.tolist() == [[-1, 5, 6], [5, 6, 7], [6, 7, -1], [-1, 8, -1]]


# --- on the real vocabulary -----------------------------------------------------------------------------


def test_infinite_epsilon_is_horizontal_shaking_exactly(
    minilm, minilm_tokenizer, sst2_test_ids, public_prior
):
    ids, labels = sst2_test_ids
    ids, labels = ids[:200], labels[:200]
    model, _ = minilm
    plain_key = generate_key(ShakeSettings(1.0, ()), model, minilm_tokenizer, "m", SEED)
    key = substituting_key(
        SubstituteSettings(1e6, "vocabulary", 20, 0), minilm, minilm_tokenizer, public_prior
    )
    assert encode_token_ids(key, ids) == encode_token_ids(plain_key, ids)
    from objectives.models import pretrained_classifier

    torch.manual_seed(0)
    shaken_plain = shake_model(pretrained_classifier(DEFAULT_MODEL, 2), plain_key)
    torch.manual_seed(0)
    shaken = shake_model(pretrained_classifier(DEFAULT_MODEL, 2), key)
    batch = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in ids[:16]], batch_first=True)
    mask = (batch != 0).long()
    from operators.inference import private_logits

    with torch.no_grad():
        a = private_logits(shaken_plain, plain_key, batch, attention_mask=mask)
        b = private_logits(shaken, key, batch, attention_mask=mask)
    assert torch.equal(a, b)


def test_the_same_text_always_gives_the_same_upload(minilm, minilm_tokenizer, sst2_test_ids, public_prior):
    ids = sst2_test_ids[0][:300]
    settings = SubstituteSettings(4.0, "vocabulary", 20, 300)
    key = substituting_key(settings, minilm, minilm_tokenizer, public_prior)
    first = encode_token_ids(key, ids)
    assert encode_token_ids(key, ids) == first  # re-encoding draws nothing new
    reloaded = substituting_key(settings, minilm, minilm_tokenizer, public_prior)
    assert encode_token_ids(reloaded, ids) == first
    other = substituting_key(settings, minilm, minilm_tokenizer, public_prior, seed=b"t" * 32)
    assert encode_token_ids(other, ids) != first  # another key, other draws
    # a phrase repeated inside a longer sentence is substituted the same way away from its edges
    sentence = ids[0]
    longer = [sentence[0], *minilm_tokenizer.convert_tokens_to_ids(["the", "film"]), *sentence[1:]]
    a, b = key.substitute([sentence, longer])
    assert a[3:-3] == b[5:-3]
    # lengths, special tokens and token counts never change
    out = key.substitute(ids)
    specials = set(minilm_tokenizer.all_special_ids)
    assert [len(s) for s in out] == [len(s) for s in ids]
    assert all(
        (x in specials) == (y in specials) and (x not in specials or x == y)
        for s, t in zip(ids, out, strict=True)
        for x, y in zip(s, t, strict=True)
    )


def test_pieces_stay_pieces_and_kept_tokens_pass(minilm, minilm_tokenizer, sst2_test_ids, public_prior):
    ids = sst2_test_ids[0][:400]
    key = substituting_key(
        SubstituteSettings(4.0, "vocabulary", 20, 1000), minilm, minilm_tokenizer, public_prior
    )
    tokens = vocabulary_tokens(minilm_tokenizer, len(public_prior))
    kept = set(key.kept)
    changed = unchanged_kept = 0
    for before, after in zip(ids, key.substitute(ids), strict=True):
        for x, y in zip(before, after, strict=True):
            assert tokens[x].startswith("##") == tokens[y].startswith("##")
            assert any(c.isdigit() for c in tokens[x]) == any(c.isdigit() for c in tokens[y])
            if x in kept and not any(c.isdigit() for c in tokens[x]):
                unchanged_kept += x == y
                assert x == y
            elif x != y:
                changed += 1
                assert y not in kept or any(c.isdigit() for c in tokens[y])  # never replaced by a kept word
    assert changed > 1000 and unchanged_kept > 3000


def test_kept_candidates_replace_rare_words_by_common_ones_and_numbers_by_numbers(
    minilm, minilm_tokenizer, sst2_test_ids, public_prior
):
    ids = sst2_test_ids[0][:200]
    settings = SubstituteSettings(128.0, "kept", 20, 1000, ("numbers", "words"))
    key = substituting_key(settings, minilm, minilm_tokenizer, public_prior)
    tokens = vocabulary_tokens(minilm_tokenizer, len(public_prior))
    kept, numeric = set(key.kept), [any(c.isdigit() for c in t) for t in tokens]
    changed = 0
    for before, after in zip(ids, key.substitute(ids), strict=True):
        assert len(before) == len(after)
        for x, y in zip(before, after, strict=True):
            assert tokens[x].startswith("##") == tokens[y].startswith("##") and numeric[x] == numeric[y]
            if x != y:
                changed += 1
                assert numeric[y] or y in kept  # a rare word becomes a common word, never another rare one
            elif x not in kept:  # special tokens pass; a number drawn among numbers may draw itself
                assert tokens[x].startswith("[") or numeric[x]
    assert changed > 300


def test_numbers_never_pass_in_clear_under_keep_top(minilm, minilm_tokenizer, public_prior):
    tokens = vocabulary_tokens(minilm_tokenizer, len(public_prior))

    def key_for(classes):
        settings = SubstituteSettings(4.0, "vocabulary", 20, 3000, classes)
        return substituting_key(settings, minilm, minilm_tokenizer, public_prior)

    frequent_numbers = [i for i in key_for(()).kept if any(c.isdigit() for c in tokens[i])]
    assert len(frequent_numbers) >= 10  # the public text's most frequent tokens hold numbers
    g = torch.Generator().manual_seed(0)
    cls, sep = minilm_tokenizer.cls_token_id, minilm_tokenizer.sep_token_id
    ids = [
        [
            cls,
            *(frequent_numbers[int(j)] for j in torch.randint(len(frequent_numbers), (8,), generator=g)),
            sep,
        ]
        for _ in range(200)
    ]

    def numbers_unchanged(classes):
        pairs = [
            (x, y)
            for s, t in zip(ids, key_for(classes).substitute(ids), strict=True)
            for x, y in zip(s[1:-1], t[1:-1], strict=True)
        ]
        return sum(x == y for x, y in pairs) / len(pairs)

    assert numbers_unchanged(("numbers",)) < 0.02  # drawn among ~2,000 numbers: rarely itself
    assert numbers_unchanged(()) == 1.0  # without the class, frequent numbers would pass in clear


# --- keys -----------------------------------------------------------------------------------------------


def test_a_key_keeps_its_kept_ids_in_its_file(minilm, minilm_tokenizer, public_prior, tmp_path):
    key = substituting_key(
        SubstituteSettings(4.0, "vocabulary", 20, 300), minilm, minilm_tokenizer, public_prior
    )
    assert len(key.kept) == 300
    loaded = load_key(save_key(key, tmp_path / "k.key"))
    assert loaded == key and loaded.kept == key.kept and loaded.fingerprint == key.fingerprint
    with pytest.raises(ShaketuneError, match="needs the pretrained model's embedding"):
        loaded.substitute([[101, 2000, 102]])
    data = json.loads((tmp_path / "k.key").read_text())
    data["kept"] = [10**9]
    bad = tmp_path / "bad.key"
    bad.write_text(json.dumps(data))
    bad.chmod(0o600)
    with pytest.raises(KeyFileError):
        load_key(bad)


def test_keeping_top_tokens_needs_public_text(minilm, minilm_tokenizer):
    with pytest.raises(SettingsError, match="keep_top need public text"):
        generate_key(
            ShakeSettings(substitute=SubstituteSettings(4.0, keep_top=10)), minilm[0], minilm_tokenizer, "m"
        )
    key = generate_key(ShakeSettings(substitute=SubstituteSettings(4.0)), minilm[0], minilm_tokenizer, "m")
    assert key.kept == () and not math.isinf(key.settings.substitute.epsilon)


def test_private_inference_substitutes_queries_as_uploaded(
    minilm, minilm_tokenizer, sst2_test_ids, public_prior
):
    ids, labels = sst2_test_ids
    key = substituting_key(
        SubstituteSettings(1.0, "vocabulary", 20, 0), minilm, minilm_tokenizer, public_prior
    )
    from objectives.models import pretrained_classifier

    torch.manual_seed(0)
    shaken = shake_model(pretrained_classifier(DEFAULT_MODEL, 2), key)
    first = evaluate_accuracy(shaken, ids[:64], labels[:64], 0, key=key)
    again = evaluate_accuracy(shaken, ids[:64], labels[:64], 0, key=key, batch_size=7)  # other padding
    assert first == again


def test_a_causal_lm_reads_and_continues_substituted_text_as_the_settings_say(tiny_causal_lm, tiny_tokenizer):
    """At an epsilon so large that nothing changes, a substituting key scores and generates exactly as the
    horizontal-only key of the same seed; at a small one, the prompt reaches the model substituted."""
    import copy

    from objectives.next_token import evaluate_next_token
    from operators.generation import private_generate

    rows = input_embedding(tiny_causal_lm).detach().clone()
    tokens = vocabulary_tokens(tiny_tokenizer, rows.shape[0])

    def shaken(settings):
        key = generate_key(settings, tiny_causal_lm, tiny_tokenizer, "tiny", SEED)
        return key.with_mechanism(rows, tokens), shake_model(copy.deepcopy(tiny_causal_lm), key)

    plain_key, plain_model = shaken(ShakeSettings(1.0, ()))
    same_key, same_model = shaken(ShakeSettings(1.0, (), substitute=SubstituteSettings(1e6)))
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(5, rows.shape[0], (int(n),), generator=g).tolist() for n in (6, 9, 12)]
    with torch.no_grad():
        a = evaluate_next_token(plain_model, docs, [1, 1, 1], 0, key=plain_key)
        b = evaluate_next_token(same_model, docs, [1, 1, 1], 0, key=same_key)
        assert a == b
        prompt = docs[2][:5]
        assert private_generate(same_model, same_key, prompt, 6) == private_generate(
            plain_model, plain_key, prompt, 6
        )
        low_key, _ = shaken(ShakeSettings(1.0, (), substitute=SubstituteSettings(0.5)))
        assert low_key.substitute([prompt])[0] != prompt  # what the cloud reads of a prompt is substituted


def test_whole_words_take_their_frequent_pieces_with_them(minilm, minilm_tokenizer, public_prior):
    """With the class ``words``, a word holding a substituted token is substituted whole (a rare name or
    e-mail address loses its frequent pieces too), while a frequent word stays whole."""
    tokens = vocabulary_tokens(minilm_tokenizer, len(public_prior))
    ids = minilm_tokenizer(["the film is by jsmith84 and it is good ."])["input_ids"]
    pieces = minilm_tokenizer.convert_ids_to_tokens(ids[0])
    assert pieces[5:9] == ["j", "##smith", "##8", "##4"]

    def substituted(classes):
        key = substituting_key(
            SubstituteSettings(4.0, "vocabulary", 20, 3000, classes), minilm, minilm_tokenizer, public_prior
        )
        assert minilm_tokenizer.convert_tokens_to_ids("j") in key.kept  # a frequent token on its own
        out = key.substitute(ids)[0]
        return [a != b for a, b in zip(ids[0], out, strict=True)], out

    alone, _ = substituted(("numbers",))
    whole, out = substituted(("numbers", "words"))
    assert alone[5] is False and all(alone[6:9])  # "j" passes on its own: the address leaks its initial
    assert all(whole[5:9])  # with its word, it is drawn too
    assert not any(whole[1:5]) and not any(whole[9:-1])  # "the film is by", "and it is good ." stay
    assert not tokens[out[5]].startswith("##") and all(tokens[i].startswith("##") for i in out[6:9])

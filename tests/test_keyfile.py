"""Key files: round trip, mode 0600, never overwritten; every bad key fails with a message naming why."""

import copy
import json
import os
import stat

import pytest
import torch
from transformers import BertForMaskedLM

from operators.errors import KeyFileError, KeyMismatchError
from operators.implant import shake_model
from operators.key import generate_key
from operators.keyfile import _checksum, load_key, save_key
from operators.recovery import recover_model
from operators.settings import preset
from tests.conftest import tiny_bert_config


@pytest.fixture()
def key(tiny_mlm, tiny_tokenizer):
    return generate_key(preset("medium"), tiny_mlm, tiny_tokenizer, "tiny-bert")


@pytest.fixture()
def key_file(key, tmp_path):
    return save_key(key, tmp_path / "secret.key")


def rewrite(path, mutate, fix_checksum=False):
    data = json.loads(path.read_text())
    mutate(data)
    if fix_checksum:
        data["checksum"] = _checksum({k: v for k, v in data.items() if k != "checksum"})
    path.write_text(json.dumps(data))


def test_round_trip_keeps_everything(key, key_file):
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    loaded = load_key(key_file)
    assert loaded == key
    assert loaded.fingerprint == key.fingerprint
    assert torch.equal(loaded.permutation.forward, key.permutation.forward)


def test_key_text_never_shows_the_seed(key, key_file):
    seed = key.seed.hex()
    assert seed in key_file.read_text()  # the file holds it...
    assert seed not in repr(key) and seed not in json.dumps(key.public_summary())  # ...nothing else


def test_existing_key_is_never_overwritten(key, key_file):
    before = key_file.read_bytes()
    with pytest.raises(KeyFileError, match="already exists; a key is never overwritten"):
        save_key(key, key_file)
    assert key_file.read_bytes() == before


def bad_key_cases():
    def truncate(path):
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])

    def flip_seed_digit(path):
        def mutate(data):
            data["seed"] = ("0" if data["seed"][0] != "0" else "1") + data["seed"][1:]

        rewrite(path, mutate)

    return [
        ("truncated", truncate, "truncated or corrupted"),
        ("edited settings", lambda p: rewrite(p, lambda d: d["settings"].update(coverage=0.5)), "modified"),
        ("edited seed", flip_seed_digit, "checksum mismatch"),
        (
            "edited fingerprint",
            lambda p: rewrite(p, lambda d: d.update(fingerprint="0" * 16), True),
            "fingerprint",
        ),
        ("future version", lambda p: rewrite(p, lambda d: d.update(version=4), True), "format version 4"),
        ("other json", lambda p: p.write_text('{"hello": "world"}'), "not a shaketune key file"),
        ("binary junk", lambda p: p.write_bytes(os.urandom(64)), "truncated or corrupted"),
        ("empty", lambda p: p.write_bytes(b""), "truncated or corrupted"),
        ("group readable", lambda p: p.chmod(0o640), "chmod 600"),
        ("world readable", lambda p: p.chmod(0o604), "accessible by group or others"),
        ("missing", lambda p: p.unlink(), "key file not found"),
    ]


@pytest.mark.parametrize(("case", "damage", "message"), bad_key_cases(), ids=[c[0] for c in bad_key_cases()])
def test_bad_key_files_fail_clearly(case, damage, message, key, key_file):
    damage(key_file)
    with pytest.raises(KeyFileError, match=message) as info:
        load_key(key_file)
    assert key.seed.hex()[:16] not in str(info.value)


def test_key_refuses_another_model(key, tiny_tokenizer):
    torch.manual_seed(99)
    other = BertForMaskedLM(tiny_bert_config(tiny_tokenizer))
    with pytest.raises(KeyMismatchError, match="key was made for model 'tiny-bert'.*embedding differs"):
        shake_model(other, key)


def test_key_refuses_another_vocabulary_size(key, tiny_tokenizer):
    bigger = BertForMaskedLM(tiny_bert_config(tiny_tokenizer))
    bigger.resize_token_embeddings(len(tiny_tokenizer) + 10)
    with pytest.raises(
        KeyMismatchError, match="vocabulary of 95 tokens; this model's embedding has 105 rows"
    ):
        shake_model(bigger, key)


def test_key_refuses_another_tokenizer(key, tmp_path):
    from transformers import BertTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[f"v{i}" for i in range(90)]]))
    with pytest.raises(KeyMismatchError, match="this tokenizer's vocabulary differs"):
        key.check_tokenizer(BertTokenizer(str(vocab)))


def test_recovery_refuses_a_model_shaken_with_another_key(key, tiny_mlm, tiny_tokenizer):
    other_key = generate_key(preset("medium"), tiny_mlm, tiny_tokenizer, "tiny-bert")
    shaken = shake_model(copy.deepcopy(tiny_mlm), other_key)
    with pytest.raises(KeyMismatchError, match=f"shaken with key {other_key.fingerprint}, not with this key"):
        recover_model(shaken, key)
    with pytest.raises(KeyMismatchError, match="already shaken"):
        shake_model(shaken, other_key)


def test_recovery_of_an_unmarked_model_warns(key, tiny_mlm):
    shaken = shake_model(copy.deepcopy(tiny_mlm), key)
    del shaken.config.shaketune
    warnings = recover_model(shaken, key)
    assert len(warnings) == 1 and "no shaketune marker" in warnings[0]

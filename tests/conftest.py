"""Shared fixtures: the SST-2 files, the default model loaded once, tiny models for fast checks, and a
PostgreSQL server for the scale-out tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # tests run servers and workers beside pytest
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:  # pytest-xdist processes share the cores rather than each claiming all of them
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from objectives.models import DEFAULT_MODEL, load_tokenizer, pretrained_classifier  # noqa: E402
from objectives.tokens import tokenize  # noqa: E402

SST2 = Path(os.environ.get("SHAKETUNE_SST2", Path(__file__).resolve().parents[2] / "shared/data/sst2"))
TINY_WORDS = [f"w{i}" for i in range(90)]


@pytest.fixture(scope="session")
def sst2() -> Path:
    """The SST-2 directory beside the project (../shared/data/sst2); its absence is a failure."""
    if not (SST2 / "test.tsv").is_file():
        pytest.fail(f"SST-2 not found at {SST2}; put ../shared beside the project or set SHAKETUNE_SST2")
    return SST2


POSTGRES: dict[str, str] = {}  # what the session's PostgreSQL tests ran on, or why they were skipped


@pytest.fixture(scope="session")
def postgres_admin():
    """The admin URL of a PostgreSQL server with trust authentication: $SHAKETUNE_TEST_PG (default
    postgresql://postgres@127.0.0.1:5432/postgres) when it answers, else a throwaway cluster started for
    this session (tests/pg_server.py); the tests skip, loudly, only where neither can be had."""
    from tests.pg_server import Unavailable, server_for_tests

    try:
        server = server_for_tests()
    except Unavailable as exc:
        POSTGRES["skipped"] = str(exc)
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    POSTGRES["used"] = server.note
    try:
        yield server.admin_url
    finally:
        if server.throwaway is not None:
            server.throwaway.stop()


def pytest_sessionfinish(session):
    """Under pytest-xdist, a worker hands its PostgreSQL note to the controller, which prints it."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["postgres"] = dict(POSTGRES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    note = getattr(node, "workeroutput", {}).get("postgres", {})
    if "skipped" in note:  # one worker that could not have PostgreSQL is enough to say so
        POSTGRES.pop("used", None)
    if "skipped" not in POSTGRES:
        POSTGRES.update(note)


def pytest_terminal_summary(terminalreporter):
    if "skipped" in POSTGRES:
        terminalreporter.write_line(f"PostgreSQL tests SKIPPED: {POSTGRES['skipped']}", red=True, bold=True)
    elif "used" in POSTGRES:
        terminalreporter.write_line(f"PostgreSQL tests ran on {POSTGRES['used']}")


@pytest.fixture(scope="session")
def minilm_tokenizer():
    return load_tokenizer(DEFAULT_MODEL)


@pytest.fixture()
def minilm_classifier():
    """A fresh copy of the default model with a (seeded) binary classification head."""
    torch.manual_seed(0)
    return pretrained_classifier(DEFAULT_MODEL, 2)


@pytest.fixture(scope="session")
def sst2_test_ids(sst2, minilm_tokenizer) -> tuple[list[list[int]], list[int]]:
    from objectives.data import read_labelled_text

    table = read_labelled_text(sst2 / "test.tsv")
    return tokenize(minilm_tokenizer, table.texts, 64), table.labels


@pytest.fixture(scope="session")
def attack_setup(sst2, minilm_tokenizer):
    """For attack tests: the public model, 1,000 private training sentences, and public text from a
    disjoint split (dev.tsv[1000:]) as the attacker's knowledge."""
    from objectives.data import read_labelled_text, read_texts
    from objectives.leakage import public_knowledge
    from objectives.models import load_as_saved

    model = load_as_saved(DEFAULT_MODEL)
    private = tokenize(minilm_tokenizer, read_labelled_text(sst2 / "train.tsv").texts[:1000], 64)
    public_ids = tokenize(minilm_tokenizer, read_texts(sst2 / "dev.tsv")[1000:], 64)
    public = public_knowledge(model, public_ids, minilm_tokenizer.all_special_ids)
    return model, minilm_tokenizer, private, public


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A 95-token WordPiece tokenizer built from a local vocabulary file (no network)."""
    from transformers import BertTokenizer

    vocab = tmp_path_factory.mktemp("tiny") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]) + "\n")
    return BertTokenizer(str(vocab))


def tiny_bert_config(tokenizer, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        **extra,
    )


@pytest.fixture()
def tiny_mlm(tiny_tokenizer):
    """A BERT masked-LM whose output layer is tied to the input embedding (random weights, seeded)."""
    from transformers import BertForMaskedLM

    torch.manual_seed(1)
    return BertForMaskedLM(tiny_bert_config(tiny_tokenizer)).eval()


@pytest.fixture()
def tiny_causal_lm(tiny_tokenizer):
    """A GPT-2 causal LM with an untied output embedding (random weights, seeded)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(2)
    config = GPT2Config(
        vocab_size=len(tiny_tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        tie_word_embeddings=False,
        bos_token_id=2,
        eos_token_id=3,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture()
def tiny_classifier(tiny_tokenizer):
    from transformers import BertForSequenceClassification

    torch.manual_seed(3)
    return BertForSequenceClassification(tiny_bert_config(tiny_tokenizer, num_labels=2)).eval()


def random_batch(tokenizer, rows: int = 6, width: int = 12, seed: int = 0) -> torch.Tensor:
    """Token ids framed by [CLS] ... [SEP], drawn from the whole vocabulary."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, len(tokenizer), (rows, width), generator=g)
    ids[:, 0] = tokenizer.cls_token_id
    ids[:, -1] = tokenizer.sep_token_id
    return ids


@pytest.fixture(scope="session")
def small_llama(tmp_path_factory, sst2) -> Path:
    """A small Llama-architecture causal LM with the bundled tokenizer, pretrained briefly on public text
    (dev.tsv[1000:]), built once per test session (about 15 s): far above chance at next-token
    prediction, so shaking and tuning act on a model that has learnt something."""
    from objectives.data import read_texts
    from objectives.small_lm import SmallLMSpec, pretrain_small_lm

    out = tmp_path_factory.mktemp("small-llama")
    spec = SmallLMSpec("llama", hidden=32, layers=2, heads=2, max_length=24, steps=60, batch_size=16)
    pretrain_small_lm(spec, read_texts(sst2 / "dev.tsv")[1000:], out)
    return out

import json
import os
from pathlib import Path

import numpy as np
import pytest

from compass.testing import new_schema, start_postgres

SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "birds sing in the morning",
             "the sun is warm today", "we read books at night", "rain falls on the roof"]
SIB_ROOT = Path(os.environ.get("COMPASS_SIB200",
                               Path(__file__).resolve().parents[2] / "shared/data/sib200"))
EXAMS_ROOT = Path(os.environ.get("COMPASS_EXAMS",
                                 Path(__file__).resolve().parents[2] / "shared/data/exams"))


def write_jsonl(path: Path, rows: list[dict]) -> str:
    """``rows`` as a UTF-8 JSONL file at ``path`` (its folder created); the path as a source string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


OPT_IN = {"long_fuzz": ("COMPASS_LONG_FUZZ", "long fuzzing run"),
          "long_model": ("COMPASS_LONG_MODEL", "minutes with the bundled Gemma")}


def pytest_collection_modifyitems(config, items):
    """Long runs (thousands of fuzzed examples, the bundled model end to end) only on
    request: ``make test`` stays short."""
    for marker, (env, what) in OPT_IN.items():
        if os.environ.get(env) == "1":
            continue
        skip = pytest.mark.skip(reason=f"{what}: set {env}=1")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the test run (``pgserver``: PostgreSQL's binaries from PyPI),
    or ``$COMPASS_TEST_POSTGRES`` (a URL to a server whose databases tests may create).
    Skips with the reason only when none can be had."""
    url = os.environ.get("COMPASS_TEST_POSTGRES")
    if url:
        yield url
        return
    import tempfile
    folder = tempfile.mkdtemp(prefix="pg")  # short: the server's socket path has a length limit
    try:
        server, url = start_postgres(folder)
    except ImportError:
        pytest.skip("PostgreSQL tests need pgserver (pip install pgserver) or $COMPASS_TEST_POSTGRES")
    except Exception as exc:  # noqa: BLE001 - any failure to start is a reason to skip
        pytest.skip(f"could not start PostgreSQL with pgserver: {exc}")
    yield url
    server.cleanup()


_schemas = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    """Where a test's ECDA database goes, once per backend: a SQLite file, or a fresh
    schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "queries.sqlite")
    return new_postgres_schema(request.getfixturevalue("postgres_server"))


def new_postgres_schema(server: str) -> str:
    """A URL to ``server`` whose tables go to a new, empty schema (see :mod:`compass.testing`)."""
    return new_schema(server, f"compass_test_{os.getpid()}_{next(_schemas)}")


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Keep test embeddings out of the user's cache (but share them across tests)."""
    os.environ["COMPASS_CACHE_DIR"] = str(tmp_path_factory.mktemp("compass-cache"))


@pytest.fixture
def sib_root() -> Path:
    if not (SIB_ROOT / "swh_Latn" / "train.tsv").is_file():
        pytest.skip(f"SIB-200 data not found at {SIB_ROOT} (set COMPASS_SIB200)")
    return SIB_ROOT


@pytest.fixture
def exams_root() -> Path:
    if not (EXAMS_ROOT / "dev.jsonl.gz").is_file():
        pytest.skip(f"EXAMS data not found at {EXAMS_ROOT} (set COMPASS_EXAMS)")
    return EXAMS_ROOT


def blobs(n_per: list[int], centres: np.ndarray, seed: int, noise: float = 0.15) -> np.ndarray:
    """Unit vectors scattered around given centres: synthetic 'topics' in embedding space."""
    rng = np.random.default_rng(seed)
    rows = [centres[i] + noise * rng.standard_normal((n, centres.shape[1]))
            for i, n in enumerate(n_per)]
    x = np.concatenate(rows).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def topic_centres() -> np.ndarray:
    rng = np.random.default_rng(42)
    c = rng.standard_normal((4, 32))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer Llama with a BPE tokenizer trained on the test sentences."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    def build(hidden: int, folder: str):
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.train_from_iterator(SENTENCES * 5, trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                       pad_token="<pad>", unk_token="<unk>")
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
                          pad_token_id=0, tie_word_embeddings=False)
        path = tmp_path_factory.mktemp(folder)
        LlamaForCausalLM(cfg).save_pretrained(path)
        fast.save_pretrained(path)
        return str(path)

    return {"a": build(32, "tiny-a"), "b": build(48, "tiny-b")}

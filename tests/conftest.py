import os
from pathlib import Path

import numpy as np
import pytest

SIB_ROOT = Path(os.environ.get("COMPASS_SIB200",
                               Path(__file__).resolve().parents[2] / "shared/data/sib200"))


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Keep test embeddings out of the user's cache (but share them across tests)."""
    os.environ["COMPASS_CACHE_DIR"] = str(tmp_path_factory.mktemp("compass-cache"))


@pytest.fixture
def sib_root() -> Path:
    if not (SIB_ROOT / "swh_Latn" / "train.tsv").is_file():
        pytest.skip(f"SIB-200 data not found at {SIB_ROOT} (set COMPASS_SIB200)")
    return SIB_ROOT


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

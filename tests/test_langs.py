import pytest

from compass.errors import ConfigError
from compass.langs import normalize_lang


@pytest.mark.parametrize("code,expected", [
    ("ko", "kor"), ("kor", "kor"), ("kat_Geor", "kat"), ("kor_Hang", "kor"), ("pt-BR", "por"),
    ("zh-Hans", "zho"), ("en_US", "eng"), ("swh", "swh"), ("sw", "swa"), ("KO", "kor"),
])
def test_normalize(code, expected):
    assert normalize_lang(code) == expected


@pytest.mark.parametrize("code", ["xyz", "", "12", "qqq"])
def test_unknown_codes_are_rejected(code):
    with pytest.raises(ConfigError, match="language code"):
        normalize_lang(code)

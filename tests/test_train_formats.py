"""Multiple-choice training formats and early stopping on dev NLL (tiny Llama, no download)."""

import pytest
from conftest import SENTENCES

from compass.adapt import TrainConfig, evaluate, train
from compass.adapt.formats import as_training
from compass.data import Record
from compass.errors import ConfigError
from compass.runtime import Runtime

ITEM = Record(id="q1", text="Which animal sat on the mat? ", lang="en",
              choices=("the dog", "the cat", "the bird"), answer=1)


@pytest.mark.parametrize("fmt,prompt,completion,text", [
    ("question", None, None, "Which animal sat on the mat? "),
    ("cloze", "Which animal sat on the mat?", "Answer: the cat", None),
    ("options", "Which animal sat on the mat?\nA. the dog\nB. the cat\nC. the bird", "Answer: the cat", None),
    ("letter", "Which animal sat on the mat?\nA. the dog\nB. the cat\nC. the bird", "Answer: B. the cat",
     None),
    ("qa", None, None, "Which animal sat on the mat?\nthe cat"),
])
def test_formats(fmt, prompt, completion, text):
    plain = Record(id="s", text="the sun is warm today", lang="en")
    item, kept = as_training([ITEM, plain], fmt)
    assert kept == plain and (item.prompt, item.completion) == (prompt, completion)
    if text is not None:
        assert item.text == text


def questions(n):
    return [Record(id=f"q{i}", text=f"{SENTENCES[i % len(SENTENCES)]} ?", lang="en",
                   choices=tuple(SENTENCES[(i + j) % len(SENTENCES)] for j in range(3)), answer=i % 3)
            for i in range(n)]


@pytest.mark.parametrize("frozen", [False, True])
def test_early_stopping_keeps_the_best_dev_weights(tiny_model, tmp_path, frozen):
    """The written adapter scores exactly the best dev NLL seen; when nothing improves
    (learning rate 0) training stops after ``patience`` evaluations and the untrained
    adapter (the base model's NLL) is kept."""
    data, dev = questions(12), questions(16)[12:]
    out = tmp_path / "adapter"
    prov = train(data, out, dev=dev, max_steps=8, batch_size=4, eval_every=2,
                 patience=2, mcq_format="cloze", learning_rate=0.0 if frozen else 3e-2, dropout=0.0,
                 runtime=Runtime(model=tiny_model["a"], progress=False))
    history = prov["dev"]["history"]
    assert prov["dev"]["metric"] == "nll" and history[0][0] == 0 and all(step % 2 == 0 for step, _ in history)
    best_step, best = min(history, key=lambda h: h[1])
    assert prov["dev"]["best_step"] == best_step
    res = evaluate(as_training(dev, "cloze"), adapters=[str(out)], bootstrap=0,
                   runtime=Runtime(model=tiny_model["a"]))
    assert res["models"][str(out)]["overall"]["nll"] == pytest.approx(best, abs=1e-4)
    if frozen:
        assert best_step == 0 and len(history) == 3  # stopped after 2 evaluations without gain
        assert res["models"][str(out)]["overall"]["nll"] == pytest.approx(
            res["models"]["base"]["overall"]["nll"], abs=1e-5)
    else:
        assert best_step > 0


def test_early_stopping_on_the_gold_option_probability(tiny_model, tmp_path):
    """``dev_metric="mcq-cloze"``: the written adapter has the best dev gold-option
    probability seen, as ``evaluate --metric mcq-cloze`` measures it."""
    data, dev = questions(12), questions(16)[12:]
    out = tmp_path / "adapter"
    prov = train(data, out, dev=dev, max_steps=8, batch_size=4, eval_every=2,
                 patience=4, mcq_format="cloze", dev_metric="mcq-cloze", learning_rate=3e-2,
                 dropout=0.0, runtime=Runtime(model=tiny_model["a"], progress=False))
    history = prov["dev"]["history"]
    assert prov["dev"]["metric"] == "mcq-cloze" and len(history) == 5
    best_step, best = max(history, key=lambda h: (h[1], -h[0]))
    assert prov["dev"]["best_step"] == best_step
    res = evaluate(dev, adapters=[str(out)], metric="mcq-cloze", bootstrap=0,
                   runtime=Runtime(model=tiny_model["a"]))
    assert res["models"][str(out)]["overall"]["gold_prob"] == pytest.approx(best, abs=1e-4)
    assert res["models"]["base"]["overall"]["gold_prob"] == pytest.approx(history[0][1], abs=1e-4)


def test_choice_format_trains_the_gold_option_share(tiny_model, tmp_path):
    """``mcq_format="choice"``: the loss is ``-log gold_prob`` itself, so training on the
    items raises their gold-option probability, as ``evaluate`` measures it."""
    words = ("xqz", "qzx", "zxq")  # the same tokens in any order: only the model tells them apart;
    # the gold one is always "xqz", in every position
    data = [Record(id=f"c{i}", text=f"{SENTENCES[i % len(SENTENCES)]} ?", lang="en",
                   choices=words[i % 3:] + words[:i % 3], answer=(3 - i % 3) % 3) for i in range(12)]
    out = tmp_path / "adapter"
    prov = train(data, out, max_steps=12, batch_size=4, mcq_format="choice",
                 learning_rate=1e-2, dropout=0.0, runtime=Runtime(model=tiny_model["a"], progress=False))
    assert prov["data"]["train"]["examples"] == 12
    res = evaluate(data, adapters=[str(out)], metric="mcq-cloze", bootstrap=0,
                   runtime=Runtime(model=tiny_model["a"]))
    gold_prob = {name: m["overall"]["gold_prob"] for name, m in res["models"].items()}
    assert gold_prob[str(out)] > gold_prob["base"] + 0.05
    with pytest.raises(ConfigError, match="no token NLL to stop on"):
        TrainConfig(mcq_format="choice", eval_every=2)


def test_bad_options(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="unknown dev_metric"):
        TrainConfig(dev_metric="bleu")
    with pytest.raises(ConfigError, match="unknown mcq_format"):
        TrainConfig(mcq_format="essay")
    with pytest.raises(ConfigError, match="eval_every needs dev data"):
        train(questions(4), tmp_path / "a", eval_every=2, runtime=Runtime(model=tiny_model["a"]))

"""Options declared once: every config field is a CLI option whose default and help text come
from the dataclass; the CLI, the Python API and experiment YAML validate through it."""

import dataclasses
from dataclasses import dataclass

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from compass.adapt import EvalConfig, TrainConfig, evaluate
from compass.cli import UPDATE_OPTIONS, WORKER_OPTIONS, ModelServer, UpdateData, app
from compass.cli.common import EMBEDDING_RUN, MODEL_RUN
from compass.ecda import Controls, NotifyConfig, PolicyConfig, WorkerConfig
from compass.errors import ConfigError
from compass.experiments import from_dict
from compass.options import cli_options, expand, option
from compass.runtime import Runtime
from compass.selection.config import SelectConfig

runner = CliRunner()
COMMAND = get_command(app)
# (command, config, its fields that are options there): every field of the config given
CONFIG_OPTIONS = [
    ("select", SelectConfig, None),
    ("train", TrainConfig, None),
    ("evaluate", EvalConfig, None),
    ("monitor", PolicyConfig, UPDATE_OPTIONS),
    ("serve", PolicyConfig, UPDATE_OPTIONS),
    ("worker", PolicyConfig, tuple(n for n in UPDATE_OPTIONS if n != "min_queries")),
    ("worker", WorkerConfig, WORKER_OPTIONS),
    ("serve", WorkerConfig, WORKER_OPTIONS),
    ("serve", ModelServer, None),
    *((command, UpdateData, None) for command in ("monitor", "worker", "serve")),
    ("select", Runtime, EMBEDDING_RUN),
    *((command, Runtime, MODEL_RUN) for command in ("train", "evaluate", "probe", "monitor", "simulate")),
    *((command, Runtime, MODEL_RUN[1:]) for command in ("experiment", "quickstart")),
    *((command, Runtime, ("model", "cache_dir", "verbose")) for command in ("worker", "serve")),
]


def click_options(command: str) -> dict[str, object]:
    """A command's options by their first flag."""
    return {p.opts[0]: p for p in COMMAND.commands[command].params}


@pytest.mark.parametrize("command, cls, only", CONFIG_OPTIONS)
def test_every_field_is_an_option_with_the_dataclass_default_and_help(command, cls, only):
    params = click_options(command)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in only or fields:
        spec, = cli_options(cls, only=[name])
        param = params[spec.decls[0].split("/")[0]]
        f = fields[name]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            assert param.required, name
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            assert param.default == default and not param.required, name
        assert param.help.startswith(f.metadata["help"]), name
    help_text = runner.invoke(app, [command, "--help"], terminal_width=200).output
    for name in only or fields:
        spec, = cli_options(cls, only=[name])
        assert spec.decls[0].split("/")[0] in help_text, name


def test_cli_defaults_are_the_dataclass_defaults_where_they_differ_in_kind():
    select = click_options("select")
    assert select["--budget"].required and select["--skip-langs"].default == []
    assert select["--centre"].secondary_opts == ["--no-centre"]
    params = click_options("train")
    assert params["--target-modules"].default == "all-linear" and params["--max-steps"].default is None
    assert "Choices: cosine | linear | constant." in params["--schedule"].help
    serve = click_options("serve")
    assert serve["--confirm"].default == Controls().confirm and serve["--default-mode"].default == "auto"
    assert serve["--cooldown"].default == Controls().cooldown
    assert serve["--lora-name"].default == NotifyConfig().lora_name
    worker = click_options("worker")
    assert worker["--update-seed"].opts == ["--update-seed", "--seed"]  # --seed: its earlier name
    assert worker["--idle"].is_flag and not worker["--idle"].secondary_opts


def test_one_flag_one_meaning_in_monitor(monkeypatch, tmp_path):
    """--seed seeds the monitor's calibration, --update-seed the update policy."""
    import compass.ecda

    seen = {}

    class Policy:
        def __init__(self, *args, config, **kw):
            seen["policy"] = config

    def replay(reference, stream, *, seed, policy, **kw):
        seen["calibration"] = seed
        raise ConfigError("stop here")

    monkeypatch.setattr(compass.ecda, "UpdatePolicy", Policy)
    monkeypatch.setattr(compass.ecda, "replay", replay)
    result = runner.invoke(app, ["monitor", "--reference", str(tmp_path), "--stream", "x.jsonl",
                                 "--out", str(tmp_path / "e.jsonl"), "--update", "--pool", "p",
                                 "--preserve", "q", "--seed", "3", "--update-seed", "7",
                                 "--budget", "50"])
    assert result.exit_code == 2 and "error: stop here" in result.output
    assert seen["calibration"] == 3
    assert seen["policy"] == PolicyConfig(budget=50, seed=7)


@pytest.mark.parametrize("args, message", [
    (["train", "--out", "OUT", "--rank", "0"], "error: LoRA rank must be ≥ 1"),
    (["train", "--out", "OUT", "--schedule", "steep"], "error: unknown schedule 'steep'"),
    (["evaluate", "--data", "x.jsonl", "--metric", "bleu"], "error: unknown metric 'bleu'"),
    (["evaluate", "--data", "x.jsonl", "--bootstrap", "-1"], "error: bootstrap must be ≥ 0"),
    (["worker", "--pool", "p", "--preserve", "q", "--budget", "0"], "error: policy budget"),
])
def test_config_errors_exit_2_before_any_work(args, message, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, [str(out) if a == "OUT" else a for a in args])
    assert result.exit_code == 2 and message in result.output
    assert not out.exists()


def test_train_cmd_gets_the_config_it_parsed(monkeypatch, tmp_path):
    import compass.adapt

    seen = {}

    def train(data, out, *, config, **kw):
        seen["config"] = config
        raise ConfigError("stop here")

    monkeypatch.setattr(compass.adapt, "train", train)
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "a"), "--target-modules", "q_proj,v_proj",
                                 "--max-steps", "3", "--weight-decay", "0.1"])
    assert result.exit_code == 2, result.output
    assert seen["config"] == TrainConfig(target_modules=["q_proj", "v_proj"], max_steps=3, weight_decay=0.1)


def test_evaluate_api_takes_a_config_or_its_fields():
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        evaluate([], metric="bleu")
    with pytest.raises(ConfigError, match="bootstrap must be ≥ 0"):
        evaluate([], config=EvalConfig(metric="mcq"), bootstrap=-1)
    with pytest.raises(TypeError):
        evaluate([], n_boot=10)


@pytest.mark.parametrize("evaluate_options, message", [
    ({"bootstrapp": 10}, r"evaluate: unknown option\(s\) \['bootstrapp'\]"),
    ({"metric": "nll"}, r"evaluate: unknown option\(s\) \['metric'\]"),  # each eval set's own
    ({"bootstrap": -1}, "evaluate: bootstrap must be ≥ 0"),
    ({"batch_size": "big"}, "evaluate: a value has the wrong type"),
])
def test_experiment_evaluate_options_validate_through_eval_config(evaluate_options, message):
    cfg = {"name": "t", "budget": 4, "strategies": ["compass"], "evaluate": evaluate_options,
           "targets": [{"lang": "sw", "usage": "u.jsonl", "pool": "p.jsonl", "eval": {"h": "e.jsonl"}}]}
    with pytest.raises(ConfigError, match=message):
        from_dict(cfg)


def test_experiment_eval_config_per_metric():
    cfg = from_dict({"name": "t", "budget": 4, "strategies": ["compass"], "evaluate": {"seed": 2},
                     "targets": [{"lang": "sw", "usage": "u.jsonl", "pool": "p.jsonl",
                                  "eval": {"h": "e.jsonl"}}]})
    assert cfg.eval_config("mcq") == EvalConfig(metric="mcq", seed=2)


@dataclass
class Toy:
    name: str = option(help="Required.")
    flag: bool = option(True, help="A switch.")
    tags: list[str] | None = option(None, help="Repeatable.")
    size: int | None = option(None, help="Optional.", metavar="N")
    kind: str = option("a", help="A kind.", choices=("a", "b"))
    items: str | list[str] = option("all", cli_type=str, parse=lambda v: v.split(","), help="Parsed.")
    hidden: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("a", "b"):
            raise ConfigError(f"unknown kind {self.kind!r}")


def toy_app(**kw):
    def guard(build):
        try:
            return build()
        except ConfigError as exc:
            typer.echo(f"error: {exc}")
            raise typer.Exit(2) from None

    toy = typer.Typer(rich_markup_mode=None)
    seen = {}

    @toy.command()
    @expand(Toy, make_option=typer.Option, guard=guard, **kw)
    def run(before: int = typer.Option(1), config: Toy = ..., after: str = typer.Option("z")) -> None:
        seen.update(before=before, config=config, after=after)

    return toy, seen


def test_expand_maps_field_types_to_options():
    toy, seen = toy_app(only=("name", "flag", "tags", "size", "kind", "items"))
    result = runner.invoke(toy, ["--name", "n", "--no-flag", "--tags", "x", "--tags", "y", "--size", "3",
                                 "--items", "p,q", "--after", "w"])
    assert result.exit_code == 0, result.output
    assert seen == {"before": 1, "after": "w", "config": Toy("n", False, ["x", "y"], 3, "a", ["p", "q"])}
    result = runner.invoke(toy, ["--name", "n"])
    assert seen["config"] == Toy("n", True, None, None, "a", ["all"])
    assert runner.invoke(toy, []).exit_code == 2  # --name is required
    result = runner.invoke(toy, ["--name", "n", "--kind", "c"])
    assert result.exit_code == 2 and "error: unknown kind 'c'" in result.output
    text = runner.invoke(toy, ["--help"], terminal_width=200).output
    assert "--flag / --no-flag" in text and "--size N" in text and "Choices: a | b." in text
    assert text.index("--before") < text.index("--name") < text.index("--after")


def test_expand_refuses_fields_without_help_and_unknown_names():
    with pytest.raises(TypeError, match="Toy.hidden has no help text"):
        toy_app()
    with pytest.raises(TypeError, match="no field"):
        toy_app(only=("name", "colour"))


def test_expand_without_building_passes_the_values():
    toy, seen = toy_app(only=("name", "size"), build=False)
    assert runner.invoke(toy, ["--name", "n"]).exit_code == 0
    assert seen["config"] == {"name": "n", "size": None}


def test_simulate_takes_the_gate_options_and_its_scenario_defaults(monkeypatch, tmp_path):
    import compass.experiments.simulate as sim

    seen = {}

    def simulate(scenario, out, **kw):
        seen["scenario"] = scenario
        raise ConfigError("stop here")

    monkeypatch.setattr(sim, "simulate", simulate)
    result = runner.invoke(app, ["simulate", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
                                 "--delta", "0.02"])
    assert result.exit_code == 2 and "error: stop here" in result.output
    default = sim.Scenario(str(tmp_path))
    assert seen["scenario"] == dataclasses.replace(default, policy=dataclasses.replace(default.policy,
                                                                                     delta=0.02))

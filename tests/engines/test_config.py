import subprocess
import sys
import tomllib
from dataclasses import FrozenInstanceError, dataclass, field

import pytest

from engines import config as base
from engines.config import DEFAULT_CONFIG, PROGRAM_SECTIONS, ConfigError, with_overrides
from monitor import config as monitor_config
from tests.conftest import REPO
from train import config as train_config
from train.config import Config, load_config

PROGRAMS = (monitor_config, train_config)


def test_config_toml_holds_every_default_and_equals_dataclasses():
    data = tomllib.loads(DEFAULT_CONFIG.read_text())
    for program in PROGRAMS:
        assert program.load_config(DEFAULT_CONFIG) == program.Config()
    both = {**monitor_config.Config().to_dict(), **train_config.Config().to_dict()}
    assert data == both  # every key present in the file, none extra


def test_frozen():
    with pytest.raises(FrozenInstanceError):
        Config().train.epochs = 3  # type: ignore[misc]


def test_each_program_has_the_shared_sections_and_its_own_and_accepts_the_others_names(tmp_path):
    assert set(monitor_config.SECTIONS) & set(train_config.SECTIONS) == set(base.sections_of())
    assert not hasattr(monitor_config.Config(), "train") and not hasattr(train_config.Config(), "ui")
    p = tmp_path / "c.toml"
    p.write_text("[train]\nepochs = 3\n[ui]\nbell = true\n[[sources]]\nkind = 'video'\naddress = 'a.mp4'\n")
    assert train_config.load_config(p).train.epochs == 3
    assert monitor_config.load_config(p).ui.bell is True
    assert monitor_config.load_config(p).sources[0].address == "a.mp4"


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda m: m.__name__)
def test_a_misspelled_key_of_either_program_is_refused_by_both(tmp_path, program):
    """The other program's section: its keys are those of the bundled config.toml (values are its own)."""
    for text, expected in [
        ("[train]\nlr_rate = 0.1\n", r"\[train\]: unknown key 'lr_rate' \(did you mean 'lr'\?\)"),
        ("[ui]\nbel = true\n", r"\[ui\]: unknown key 'bel' \(did you mean 'bell'\?\)"),
        ("[trian]\nlr = 0.1\n", r"unknown section \[trian\] \(did you mean 'train'\?\)"),
        ("[uii]\nbell = true\n", r"unknown section \[uii\] \(did you mean 'ui'\?\)"),
    ]:
        p = tmp_path / "c.toml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=expected):
            program.load_config(p)


def test_a_programs_config_must_declare_its_row_of_program_sections():
    with pytest.raises(TypeError, match="PROGRAM_SECTIONS"):

        @dataclass(frozen=True)
        class Extra(base.Config, program="monitor"):  # lacks the monitor's sections, has one of its own
            sneaky: monitor_config.UIConfig = field(default_factory=monitor_config.UIConfig)

    assert set(monitor_config.SECTIONS) - set(base.sections_of()) | {"sources"} == set(
        PROGRAM_SECTIONS["monitor"]
    )
    assert set(train_config.SECTIONS) - set(base.sections_of()) == set(PROGRAM_SECTIONS["train"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[train]\nlr_rate = 0.1\n", r"\[train\]: unknown key 'lr_rate' \(did you mean 'lr'\?\)"),
        ("[trian]\nlr = 0.1\n", r"unknown section \[trian\] \(did you mean 'train'\?\)"),
        ("[train]\nepochs = 'ten'\n", r"\[train\]\.epochs must be an integer"),
        ("[train]\nepochs = 0\n", r"\[train\]\.epochs = 0 is out of range"),
        ("[detector]\nthresholds = [0.5, 0.5]\n", r"thresholds must have 3 items"),
        ("[detector]\nthresholds = [0.5, 0.5, 1.5]\n", r"thresholds\[2\] = 1.5 is out of range"),
        ("[model]\nhead = 'mult'\n", r"head = 'mult' is not one of .*did you mean 'multi'"),
        ("[export]\nmin_batch = 8\nopt_batch = 4\n", r"min_batch <= opt_batch <= max_batch"),
        ("[ui]\nbell = 1\n", r"bell must be true or false"),
        ("[train\n", r"not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, expected):
    p = tmp_path / "c.toml"
    p.write_text(text)
    program = monitor_config if text.startswith("[ui]") else train_config
    with pytest.raises(ConfigError, match=expected) as info:
        program.load_config(p)
    assert str(p) in str(info.value)


def test_partial_file_keeps_other_defaults_and_resolves_paths_against_its_folder(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nepochs = 3\n[engine]\npath = 'm/x.onnx'\n")
    cfg = load_config(p)
    assert cfg.train.epochs == 3 and cfg.train.lr == Config().train.lr
    assert cfg.resolve(cfg.engine.path) == tmp_path / "m" / "x.onnx"


def test_cli_paths_are_relative_to_the_working_directory_file_paths_to_the_file(tmp_path, monkeypatch):
    """A path typed on the command line means what the shell means by it; one in a config file is relative to
    that file's folder. Every path=True key, for every CLI (they all build their config with
    config_from_args)."""
    import argparse

    from train.config import config_from_args

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "c.toml").write_text("[data]\ncache_dir = 'mycache'\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = argparse.Namespace(
        **{
            "config": str(conf / "c.toml"),
            "data.data_dir": "mydata",
            "train.out_dir": "../runs",
            "export.timing_cache": "t.cache",
            "engine.path": str(tmp_path / "abs.onnx"),
            "train.epochs": 3,
            "data.num_workers": None,
            "other": "x",
        }
    )
    cfg = config_from_args(args)
    assert cfg.resolve(cfg.data.data_dir) == work / "mydata"
    assert cfg.resolve(cfg.train.out_dir) == tmp_path / "runs"
    assert cfg.resolve(cfg.export.timing_cache) == work / "t.cache"
    assert cfg.resolve(cfg.engine.path) == tmp_path / "abs.onnx"
    assert cfg.resolve(cfg.data.cache_dir) == conf / "mycache"  # from the file: beside the file
    assert cfg.train.epochs == 3 and cfg.data.num_workers == Config().data.num_workers
    empty = config_from_args(argparse.Namespace(**{"config": None, "export.timing_cache": ""}))
    assert empty.export.timing_cache == ""  # "" keeps its meaning (the default)


def test_overrides_are_validated_like_the_file():
    cfg = with_overrides(
        Config(), {"train.epochs": 2, "detector.thresholds": [0.4, 0.5, 0.6], "train.amp": None}
    )
    assert cfg.train.epochs == 2 and cfg.detector.thresholds == (0.4, 0.5, 0.6) and cfg.train.amp is True
    with pytest.raises(ConfigError, match="epochs"):
        with_overrides(Config(), {"train.epochs": -1})
    with pytest.raises(
        ConfigError, match=r"override 'ui.bell': unknown section"
    ):  # the monitor's, not train's
        with_overrides(Config(), {"ui.bell": True})


def test_missing_config_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_cli_reports_a_bad_config_in_one_line_without_traceback(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nepohcs = 3\n")
    r = subprocess.run(
        [sys.executable, "-m", "train", "fit", "--config", str(p)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "unknown key 'epohcs'" in lines[0] and "did you mean 'epochs'" in lines[0]
    assert "Traceback" not in r.stderr

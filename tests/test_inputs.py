"""Bad input said in one line, early (issue 12, items 10 and 11): typos of keys name the real
key, unparsable overrides say why, optional groups name their choices; figures and verdicts of
a sweep whose runs all failed are refused, and nothing is written."""

import pytest

from forgetting.analyze import main as analyze_main
from forgetting.core.errors import UserError
from forgetting.plot import main as plot_main
from forgetting.runs.preflight import preflight
from helpers import TINY, one_line_error, run_cli, write_run


@pytest.mark.parametrize("arg, message", [
    ("modle=resnet9", "unknown key 'modle'; did you mean 'model'? top-level keys are "),
    ("subste=0.5", "unknown key 'subste'; did you mean 'subset'? "),
    ("model.widht=2", "unknown key 'model.widht'; did you mean 'model.width'? keys of model "
     "are name, width"),
    ("learning_rate=1", "unknown key 'learning_rate'; top-level keys are "),
    ("lr=choice()", "cannot parse 'lr=choice()': 'choice()': empty choice is not legal "
     "(Hydra's override grammar: "),
    ("lr=[1,2", "cannot parse 'lr=[1,2': no viable alternative at input '[1,2'"),
    ("+trainset=half", "+trainset='half': choose one of full_augmented, half_plain"),
    ("+trainset=half_plain,whole", "+trainset='whole': choose one of full_augmented, "
     "half_plain"),
])
def test_bad_overrides_are_named_with_what_is_meant(arg, message):
    with pytest.raises(UserError) as e:
        preflight(["-m", arg])
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)
    if "did you mean" in message:
        assert "+" not in str(e.value)  # a typo of a real key never gets a `+KEY=` hint
    preflight(["+trainset=half_plain", "model=resnet9"])


@pytest.mark.slow
def test_a_typo_is_one_line_on_the_command_line(tmp_path):
    proc = run_cli(*TINY, "modle=resnet9", f"hydra.run.dir={tmp_path / 'run'}")
    assert "did you mean 'model'?" in one_line_error(proc)
    proc = run_cli(*TINY, "+trainset=half", f"hydra.run.dir={tmp_path / 'run'}")
    assert one_line_error(proc) == ("error: +trainset='half': choose one of full_augmented, "
                                    "half_plain")
    assert not (tmp_path / "run").exists()


def failed_sweep(folder):
    for n in range(2):
        write_run(folder / str(n), "failed", error="boom", lr=n + 1, config={"lr": n + 1})
    return folder


@pytest.mark.parametrize("main, what", [(plot_main, "draw"), (analyze_main, "judge")])
def test_nothing_to_draw_or_judge_when_every_run_failed(tmp_path, capsys, main, what):
    folder = failed_sweep(tmp_path / "sweep")
    before = sorted(folder.rglob("*"))
    assert main([str(folder)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: DIR={str(folder)!r}: nothing to {what}: none of its 2 runs finished "
        "(2 failed)"]
    assert sorted(folder.rglob("*")) == before  # no figures/, no verdict
    write_run(folder / "2", "ok", lr=3, config={"lr": 3})
    main([str(folder)])  # one finished run: past this check
    assert "none of its" not in capsys.readouterr().err

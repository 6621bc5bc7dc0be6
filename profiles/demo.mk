# Demo profile: the whole study on generated phantoms, small enough for about 5 minutes on a
# 2-core CPU after setup. Same stages and file layout as the paper profile; only sizes differ.
# Every value can be overridden on the command line, e.g. `make reproduce SPLITS=3 DEMO_N_CLS=400`.
# WORK defaults to work/demo (work/demo-patient with SPLIT_BY=patient), set in the Makefile.
DATA_SOURCE := demo

# Two stages at a time, one thread each: on 2 cores this keeps both busy (the segmentation chain
# beside the runs on original images; two runs side by side), where two threads per process mostly
# wait on each other. DEMO_JOBS=1 runs one stage at a time with torch's default threads. The job
# slots belong to the make the user started; the makes it starts itself (SUBMAKE) share them.
DEMO_JOBS ?= 2
ifneq ($(PIPELINE_GOALS),)
ifneq ($(DEMO_JOBS),1)
ifeq ($(SUBMAKE),)
MAKEFLAGS += -j$(DEMO_JOBS)
endif
export OMP_NUM_THREADS ?= 1
endif
endif

# Mask prediction (the longest stage) in two halves, one per core, joined by cxrseg.gather: the
# second half runs on the core that the runs on original images leave free.
PREDICT_SHARDS ?= 2

# Generated data (cxrcls.demo_data): a segmentation set like RSUA and an NIH-like set.
DEMO_N_SEG  ?= 32
DEMO_N_CLS  ?= 120
DEMO_SIZE   ?= 256
DEMO_FLAGS  ?=
SEG_IMAGES  := $(WORK)/data/seg/images
SEG_MASKS   := $(WORK)/data/seg/masks
NIH_LABELS  := $(WORK)/data/nih/Data_Entry_2017.csv
NIH_IMAGES  := $(WORK)/data/nih/images

# Segmentation: LiteMedSAM's real weights when installed (make setup does), else a random micro
# model, with a loud warning when make starts.
SEG_CHECKPOINT = $(if $(LITE_WEIGHTS),lite,micro)
SEG_CONFIG     = $(SEG_CHECKPOINT)
SEG_WARNING    = $(if $(LITE_WEIGHTS),,LiteMedSAM weights not found (run make setup): the demo \
                 segments with a RANDOM micro model, so its masks are meaningless)
# The recipe the README recommends for automatic prompting (cxrseg section): train the decoder on
# prior boxes half the time, since predict prompts with the prior box; choose the threshold on
# validation with prior-box prompts, 1 refine pass and holes filled. That prompting is the recipe:
# evaluate records it in seg/done_evaluate.json and predict takes it from there (PREDICT_ARGS only
# override). The paper profile adds opacity augmentation; the demo's phantom lungs are clear, so it
# saves that time.
FINETUNE_ARGS ?= --train decoder --prior-box-fraction 0.5 --epochs 4 --patience 3 --batch-size 8
EVALUATE_ARGS ?= --box-source prior --refine 1 --fill-holes
PREDICT_ARGS  ?=

# Cohort and cache: every generated image is used (the study's caps of 2,000 are far above 120),
# split by image unless SPLIT_BY=patient.
SPLITS      ?= 2
COHORT_ARGS ?=
CACHE_SIZE  ?= 512
CACHE_ARGS  ?=
ERODE       ?= 5

# Classifiers: both backbones on all three inputs, from scratch (no downloads), small input.
# From scratch on 84 training images, ResNet50 often learns only after 4-5 epochs, so the demo runs
# all 8 epochs (patience = epochs: no early stop) and keeps the best validation epoch, as always.
TRAIN_ARGS  ?= --weights none --image-size 64 --epochs 8 --patience 8 --batch-size 8 --lr 1e-3
REPORT_ARGS ?=
# Attribution (opt-in, ATTRIBUTION=1): also score each image's spurious-cue box (phantoms.csv; its
# box columns are empty without DEMO_FLAGS=--spurious-cue, and then no region table is written).
ATTRIBUTION_ARGS ?= --region-csv $(WORK)/data/nih/phantoms.csv

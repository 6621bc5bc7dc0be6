# Tiny profile: the whole pipeline in well under a minute, for tests/test_pipeline_e2e.py.
# Random micro segmenter, a dozen segmentation pairs, 40 images at 32 px, 1 epoch, 2 splits.
DATA_SOURCE := demo

DEMO_N_SEG  ?= 12
DEMO_N_CLS  ?= 40
DEMO_SIZE   ?= 64
DEMO_FLAGS  ?=
SEG_IMAGES  := $(WORK)/data/seg/images
SEG_MASKS   := $(WORK)/data/seg/masks
NIH_LABELS  := $(WORK)/data/nih/Data_Entry_2017.csv
NIH_IMAGES  := $(WORK)/data/nih/images

SEG_CHECKPOINT := micro
SEG_CONFIG     := micro
SEG_WARNING    :=
FINETUNE_ARGS ?= --train decoder --epochs 1 --batch-size 4
EVALUATE_ARGS ?=
PREDICT_ARGS  ?= --batch-size 8
PREDICT_SHARDS ?= 2

SPLITS      ?= 2
COHORT_ARGS ?=
CACHE_SIZE  ?= 64
CACHE_ARGS  ?= --workers 1
ERODE       ?= 1

# One small backbone on two inputs keeps the test quick; the demo trains the full grid.
ARCHS       ?= resnet18
INPUTS      ?= original m50
TRAIN_ARGS  ?= --weights none --image-size 32 --epochs 1 --batch-size 8 --lr 1e-3
REPORT_ARGS ?= --permutations 720

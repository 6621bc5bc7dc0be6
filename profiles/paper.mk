# Paper profile: the study's values on the real data.
#   make reproduce PROFILE=paper NIH_DIR=/data/ChestX-ray14 RSUA_DIR=/data/RSUA \
#        MEDSAM_CKPT=/models/medsam_vit_b.pth
#   make reproduce PROFILE=paper NIH_DIR=... RSUA_DIR=... SEG_MODEL=lite   # LiteMedSAM instead
# NIH_DIR holds Data_Entry_2017.csv (or _v2020) and the images anywhere below it (images_001/...);
# RSUA_DIR holds images/ and masks/ with matching file stems (set RSUA_MASK_SUFFIX, e.g. _mask,
# when mask names carry one); MEDSAM_CKPT is MedSAM's medsam_vit_b.pth. WORK defaults to work/paper.
DATA_SOURCE := real

NIH_DIR          ?=
SEG_DATA         ?=
SEGMENTER_ONLY   ?=
RSUA_DIR         ?=
MEDSAM_CKPT      ?=
RSUA_IMAGES      ?= $(RSUA_DIR)/images
RSUA_MASKS       ?= $(RSUA_DIR)/masks
RSUA_MASK_SUFFIX ?=
NIH_LABELS       ?= $(firstword $(wildcard $(NIH_DIR)/Data_Entry_2017.csv \
                                           $(NIH_DIR)/Data_Entry_2017_v2020.csv))
NIH_IMAGES       ?= $(NIH_DIR)

SEG_IMAGES      := $(RSUA_IMAGES)
SEG_MASKS       := $(RSUA_MASKS)
SEG_MASK_SUFFIX := $(RSUA_MASK_SUFFIX)

# The segmenter: SEG_MODEL=medsam (the study's MedSAM ViT-B at 1024, needs MEDSAM_CKPT) or
# SEG_MODEL=lite (LiteMedSAM, the weights `make setup` installs; for a machine without a GPU or
# without the ViT-B weights). MedSAM is fully fine-tuned (image encoder + mask decoder) as in the
# study; LiteMedSAM trains its decoder on cached embeddings, the recipe measured in the README.
SEG_MODEL ?= medsam
ifeq ($(SEG_MODEL),medsam)
SEG_CHECKPOINT := $(MEDSAM_CKPT)
SEG_CONFIG     := vit_b
SEG_TRAIN      := all
else ifeq ($(SEG_MODEL),lite)
SEG_CHECKPOINT := lite
SEG_CONFIG     := lite
SEG_TRAIN      := decoder
else
$(error SEG_MODEL=$(SEG_MODEL): choose medsam (MedSAM ViT-B, MEDSAM_CKPT) or lite (LiteMedSAM))
endif
SEG_WARNING    :=
# Segmentation recipe (README, cxrseg): prior boxes on half the training steps, synthetic-opacity
# augmentation, two copies per image (lungs hidden by disease; two beat one on validation), the
# threshold chosen on validation with prior-box prompts, 1 refine pass and holes filled: the recipe
# evaluate records in seg/done_evaluate.json, which predict follows (PREDICT_ARGS only override).
FINETUNE_ARGS ?= --train $(SEG_TRAIN) --prior-box-fraction 0.5 --augment opacity \
                 --augment-copies 2
EVALUATE_ARGS ?= --box-source prior --refine 1 --fill-holes
PREDICT_ARGS  ?=

# 2,000 images per label and 2,000 No Finding, 5 matched 70/15/15 splits by image (SPLIT_BY),
# 512 px.
SPLITS      ?= 5
COHORT_ARGS ?= --per-label 2000 --no-finding 2000
CACHE_SIZE  ?= 512
CACHE_ARGS  ?=
ERODE       ?= 5

# ImageNet-initialised ResNet50 / DenseNet121, BCE, Adam 1e-4, batch 4, up to 30 epochs.
TRAIN_ARGS  ?= --weights imagenet --epochs 30 --batch-size 4 --lr 1e-4
REPORT_ARGS ?=

# Clear errors before anything runs (only for goals that run the pipeline, plain `make` included),
# each naming the variable to fix: NIH_LABELS, NIH_IMAGES, RSUA_IMAGES or RSUA_MASKS when given,
# else the NIH_DIR or RSUA_DIR they default from. (set_by_user: given on the command line or in the
# environment, not defaulted here.)
# `make segmenter` (SEGMENTER_ONLY=1, profiles/user.mk) needs no NIH data; SEG_DATA replaces RSUA.
set_by_user = $(filter-out file default undefined,$(origin $(1)))
given_or    = $(if $(call set_by_user,$(1)),$(1),$(2))
ifneq ($(PROFILE_GOALS),)
ifneq ($(SEGMENTER_ONLY),1)
ifeq ($(strip $(NIH_DIR)),)
ifeq ($(and $(call set_by_user,NIH_LABELS),$(call set_by_user,NIH_IMAGES)),)
$(error PROFILE=paper needs NIH_DIR=<folder with Data_Entry_2017.csv and the NIH images>)
endif
else ifeq ($(call is_dir,$(NIH_DIR)),)
$(error NIH_DIR=$(NIH_DIR): $(if $(wildcard $(NIH_DIR)),not a folder,folder not found); give the \
	folder with Data_Entry_2017.csv and the NIH images)
endif
ifeq ($(NIH_LABELS),)
$(error NIH_DIR=$(NIH_DIR): no Data_Entry_2017.csv or Data_Entry_2017_v2020.csv in it \
	(set NIH_LABELS=<the labels table> if it is elsewhere))
endif
ifeq ($(call is_file,$(NIH_LABELS)),)
$(error NIH_LABELS=$(NIH_LABELS): file not found; give NIH's labels table (Image Index, Finding \
	Labels, Patient ID), e.g. NIH_DIR/Data_Entry_2017.csv)
endif
ifeq ($(call is_dir,$(NIH_IMAGES)),)
$(error $(call given_or,NIH_IMAGES,NIH_DIR)=$(value $(call given_or,NIH_IMAGES,NIH_DIR)): \
	$(if $(call set_by_user,NIH_IMAGES),image folder $(NIH_IMAGES) not found,folder not found); \
	give the folder with the NIH images (anywhere below it))
endif
endif
ifeq ($(strip $(SEG_DATA)),)
ifeq ($(strip $(RSUA_DIR)),)
ifeq ($(and $(call set_by_user,RSUA_IMAGES),$(call set_by_user,RSUA_MASKS)),)
$(error PROFILE=paper needs RSUA_DIR=<folder with images/ and masks/ of the RSUA lung set>)
endif
endif
ifeq ($(call is_dir,$(RSUA_IMAGES)),)
$(error $(call given_or,RSUA_IMAGES,RSUA_DIR)=$(value $(call given_or,RSUA_IMAGES,RSUA_DIR)): \
	no images folder $(RSUA_IMAGES) (set RSUA_IMAGES=... if it is elsewhere))
endif
ifeq ($(call is_dir,$(RSUA_MASKS)),)
$(error $(call given_or,RSUA_MASKS,RSUA_DIR)=$(value $(call given_or,RSUA_MASKS,RSUA_DIR)): \
	no masks folder $(RSUA_MASKS) (set RSUA_MASKS=... if it is elsewhere))
endif
endif
ifeq ($(SEG_MODEL),medsam)
ifeq ($(strip $(MEDSAM_CKPT)),)
$(error PROFILE=paper needs MEDSAM_CKPT=<path to medsam_vit_b.pth> (or SEG_MODEL=lite))
endif
ifeq ($(call is_file,$(MEDSAM_CKPT)),)
$(error MEDSAM_CKPT=$(MEDSAM_CKPT): file not found)
endif
endif
endif

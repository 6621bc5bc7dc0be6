# Your own data (README "Your own data"): a segmenter trained on your lung-mask sets, and lung masks
# of your own radiographs, outside the study's pipeline; and the ImageNet weights, fetched once.
#
#   make segmenter [SEG_DATA="montgomery=DIR/images:DIR/masks shenzhen=DIR2/img:DIR2/mask:_mask"]
#       only the segmentation stages (split, fine-tune, with FINETUNE2_ARGS a second fine-tuning,
#       evaluate) into $(W)/seg with the profile's recipe (FINETUNE_ARGS, EVALUATE_ARGS), on the
#       named sets (NAME=IMAGES:MASKS[:SUFFIX], each its own dataset; default: the profile's own
#       set). The pipeline's own stage rules run them, through a sub-make whose goal is seg/'s
#       evaluate stamp.
#   make segment IMAGES=DIR OUT=DIR [SEGMENTER=$(W)/seg] [SEGMENT_ARGS="--masked --overlay"]
#       the lung masks (raw, M-15, M-50) of every image in DIR: cxrseg.predict --segmenter, which
#       takes checkpoint, prior, threshold and prompting from the segmenter folder, as the
#       pipeline's mask prediction does (plus the profile's PREDICT_ARGS, as there). --extent
#       $(EXTENT) too: a segmenter fine-tuned on whole-lung masks needs EXTENT=full. The masks are
#       eroded by ERODE, as the pipeline's post-processing erodes: ERODE is in pixels of the
#       profile's cache (CACHE_SIZE) and cxrseg.predict's --erode in pixels of a 512-px side
#       scaled to each image, so Make passes the radius that gives ERODE pixels at CACHE_SIZE
#       (cxrseg/study_masks.py, the rule cxrcls.predict checks masks by; ERODE itself at 512).
#       SEGMENT_ARGS may not set a flag Make sets (--erode, --extent, --device): Make stops,
#       naming the variable to set instead.
#   make weights [IMAGENET_DIR=DIR]
#       the ImageNet weights of ARCHS into weights/imagenet/, or IMAGENET_DIR (python -m
#       cxrcls.weights; network). Training reads them from the same folder.
#       `make setup PROFILE=paper` runs it too.
# These goals are not pipeline goals (Makefile, NON_PIPELINE_GOALS): the profile's checks of the
# study's data (NIH_DIR, RSUA_DIR) do not apply to them.

SEGMENTER      ?= $(W)/seg
SEGMENTER_ONLY ?=
SEGMENT_ARGS   ?=
SEGMENT_ERODE  :=
IMAGES         ?=
OUT            ?=

.PHONY: segment segmenter weights

ifneq ($(filter segment,$(value MAKECMDGOALS)),)
ifeq ($(strip $(IMAGES)),)
$(error make segment needs IMAGES=<folder of radiographs> (and OUT=<folder for the masks>))
endif
ifeq ($(strip $(OUT)),)
$(error make segment needs OUT=<new or empty folder for the masks>)
endif
# The folders it reads must exist (tested by the shell: their names may hold spaces). SEGMENTER
# defaults to the seg/ folder of WORK, which is work/<profile> unless given: after a pipeline run in
# another WORK, name that WORK again, or the segmenter folder itself.
shell_quote = '$(subst ','\'',$(1))'
ifneq ($(shell test -e $(call shell_quote,$(IMAGES)) || echo missing),)
$(error IMAGES=$(IMAGES): not found; give the folder of radiographs to segment)
endif
ifneq ($(shell test -d $(call shell_quote,$(SEGMENTER)) || echo missing),)
$(error SEGMENTER=$(SEGMENTER): folder not found. make segment reads the seg/ folder that \
	`make segmenter` or `make reproduce` wrote under their WORK: pass WORK=<that work folder> \
	(as given to them), or SEGMENTER=<the segmenter folder>)
endif
SEGMENT_ERODE := $(shell $(PYTHON) cxrseg/study_masks.py --pipeline-radius \
	$(call shell_quote,$(ERODE)) $(call shell_quote,$(CACHE_SIZE)))
ifeq ($(SEGMENT_ERODE),)
$(error make segment: no erosion radius for ERODE=$(ERODE) at CACHE_SIZE=$(CACHE_SIZE) (above: \
	PYTHON=$(PYTHON) cxrseg/study_masks.py --pipeline-radius $(ERODE) $(CACHE_SIZE)))
endif
endif

# (the folders quoted: a folder of one's own may have spaces in its name)
CMD_SEGMENT = $(strip cxrseg.predict --images "$(IMAGES)" --segmenter "$(SEGMENTER)" \
              --extent $(EXTENT) --erode $(SEGMENT_ERODE) --out "$(OUT)" $(PREDICT_ARGS) \
              $(SEGMENT_ARGS) --device $(DEVICE))
# A flag of SEGMENT_ARGS that CMD_SEGMENT sets too would reach cxrseg.predict twice, which refuses
# it: Make stops, naming the variable to set instead (profiles/pipeline.mk, "flags Make sets").
ifneq ($(filter segment,$(value MAKECMDGOALS)),)
$(foreach f,$(firstword $(call set_by_make,SEGMENT)),$(error $(call flag_error,SEGMENT,$(f))))
endif
segment: | $(SETUP)
	$(PY) -m $(CMD_SEGMENT)

# SEGMENTER_ONLY=1 tells the sub-make that nothing beyond seg/ runs: no NIH data and no ImageNet
# weights are needed (profiles/paper.mk, below). SEG_DATA reaches it from the command line.
segmenter: | $(SETUP)
	+@$(MAKE) --no-print-directory -o $(SETUP) $(EVALUATE_DONE) SEGMENTER_ONLY=1
	@echo "segmenter: $(W)/seg (best.pt, prior.json, eval.csv); use it with" \
		"make segment IMAGES=<folder> OUT=<folder> SEGMENTER=$(W)/seg"

weights: | $(SETUP)
	$(PY) -m cxrcls.weights --archs $(ARCHS)

ifeq ($(PROFILE),paper)
setup: weights
endif

# Training with --weights imagenet reads IMAGENET_DIR/<torchvision's file name> (empty: the
# project's weights/imagenet) and never downloads. Which files and which folder is
# cxrcls/imagenet_files.py's rule (standard library only), run here, so Make checks exactly the
# files training will read; IMAGENET_DIR is exported, so `make weights` fetches into the same folder
# and every stage reads from it. Missing files stop make here, before any stage runs, rather than a
# training run hours later.
IMAGENET_DIR ?=
export IMAGENET_DIR
ifneq ($(PROFILE_GOALS),)
ifneq ($(SEGMENTER_ONLY),1)
USES_IMAGENET = $(findstring --weights imagenet,$(strip $(TRAIN_ARGS)))$(filter \
	--weights=imagenet,$(TRAIN_ARGS))
ifneq ($(USES_IMAGENET),)
MISSING_WEIGHTS := $(shell IMAGENET_DIR='$(subst ','\'',$(IMAGENET_DIR))' \
	$(PYTHON) cxrcls/imagenet_files.py --missing $(ARCHS))
ifneq ($(MISSING_WEIGHTS),)
$(error TRAIN_ARGS uses --weights imagenet, but the ImageNet weights cannot be read \
	($(MISSING_WEIGHTS)): fetch them once with `make weights` where there is a network (no stage \
	downloads; on a cluster whose compute nodes have none, run it on a login node, or copy those \
	files there from a machine that has them: docs/cluster.md), or train from random \
	initialisation (not the study's setting): \
	TRAIN_ARGS="$(strip $(subst --weights=imagenet,--weights none,$(subst \
	--weights imagenet,--weights none,$(TRAIN_ARGS))))")
endif
endif
endif
endif

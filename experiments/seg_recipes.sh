#!/usr/bin/env bash
# The segmentation recipes' numbers in docs/segmentation.md from one run, side by side.
#
#   bash experiments/seg_recipes.sh [OUT]        (default OUT=work/seg-recipes)
#
# Run it from the repository root: the Python steps run as modules (python -m experiments.<name>).
#
# Data: Montgomery and Shenzhen under $LUNGSEG (default ../shared/data/lungseg; skipped if absent).
# 1. Seeded 70/15/15 splits of each set (the joint split of both sets gives each set the same
#    parts, since cxrseg.split splits every dataset on its own).
# 2. LiteMedSAM, decoder-only fine-tuning on cached embeddings, with each recipe:
#      copies0: --prior-box-fraction 0.5 (no synthetic-opacity copies)
#      copies1: copies0 + --augment opacity --augment-copies 1 (one synthetic-opacity copy per image)
#      copies2: copies0 + --augment opacity --augment-copies 2 (the profiles' recipe, chosen on validation)
#    on Montgomery (all three), on Shenzhen and on both sets together (copies2).
# 3. experiments/seg_stress.py with the Montgomery-trained runs (zero-shot and the three recipes):
#    refine 0 / 1, threshold 0.5 / 0.4, with and without hole filling, on Montgomery's validation
#    images (where the choice is made), then the chosen prompting on its held-out test images.
# 4. experiments/seg_cross_dataset.py: every run on each training set's test part and on all of
#    the other set; Dice with the ground-truth box and with automatic prompting, M-15 kept share.
# 5. Shape QC (cxrseg.postprocess --shape-prior) of the masks that the Montgomery-trained runs
#    predict for the 60 NIH sample images ($NIH, default ../shared/data/nih_sample).
# Each step is skipped when its output exists, so an interrupted run continues (a finished
# fine-tuning run only when it is the run these arguments make from today's files: cxrseg.finetune
# --check-finished). Embeddings are cached in OUT/emb and shared by every decoder-only run.
set -euo pipefail
OUT=${1:-work/seg-recipes}
LUNGSEG=${LUNGSEG:-../shared/data/lungseg}
PY=${PY:-.venv/bin/python}
EPOCHS=${EPOCHS:-4}
if [ ! -d "$LUNGSEG/montgomery" ] || [ ! -d "$LUNGSEG/shenzhen" ]; then
    echo "skip: $LUNGSEG/montgomery and shenzhen not found"; exit 0
fi
mkdir -p "$OUT"
data() { echo "--data $1=$LUNGSEG/$1/images:$LUNGSEG/$1/masks"; }
declare -A SETS=([montgomery]="$(data montgomery)" [shenzhen]="$(data shenzhen)"
                 [montgomery+shenzhen]="$(data montgomery) $(data shenzhen)")
declare -A RECIPE=([copies0]="--prior-box-fraction 0.5"
                   [copies1]="--prior-box-fraction 0.5 --augment opacity --augment-copies 1"
                   [copies2]="--prior-box-fraction 0.5 --augment opacity --augment-copies 2")
start=$(date +%s)
say() { echo "[seg_recipes $(( $(date +%s) - start )) s] $*"; }

split() {
    [ -f "$OUT/$1/done_split.json" ] && return 0
    say "split $1"
    # shellcheck disable=SC2086
    $PY -m cxrseg.split ${SETS[$1]} --out "$OUT/$1/splits.csv" --seed 0
}
finetune() {  # finetune TRAIN RECIPE
    local run=$OUT/runs/$1-$2 check=()
    # a finished run is kept only when it is the run these arguments make from today's files
    [ -f "$run/done_finetune.json" ] && check=(--check-finished)
    [ ${#check[@]} -eq 0 ] && say "fine-tune $1-$2"
    # shellcheck disable=SC2086
    $PY -m cxrseg.finetune ${SETS[$1]} --splits "$OUT/$1/splits.csv" --checkpoint lite \
        --train decoder ${RECIPE[$2]} --epochs "$EPOCHS" --patience 2 --batch-size 8 \
        --cache-dir "$OUT/emb" --out "$run" --seed 0 --device cpu "${check[@]}"
}
stress() {  # stress SET PART NAME PROMPTING...: Montgomery-trained runs on stressed SET/PART images
    local set=$1 part=$2 name=$3
    shift 3
    [ -f "$OUT/$name/stress.csv" ] && return 0
    say "stress test: $set $part images ($name)"
    $PY -m experiments.seg_stress --images "$LUNGSEG/$set/images" \
        --masks "$LUNGSEG/$set/masks" --splits "$OUT/$set/splits.csv" --part "$part" --limit 0 \
        --run "zero-shot=lite:$OUT/runs/montgomery-copies0" --run "copies0=$OUT/runs/montgomery-copies0" \
        --run "copies1=$OUT/runs/montgomery-copies1" --run "copies2=$OUT/runs/montgomery-copies2" \
        "$@" --cache-dir "$OUT/emb" --out "$OUT/$name"
}

for train in montgomery shenzhen montgomery+shenzhen; do split "$train"; done
finetune montgomery copies0
finetune montgomery copies1
finetune montgomery copies2
# Choices (opacity copies, refine passes, threshold, hole filling) are made on validation images;
# then the chosen ones are reported on held-out test images.
stress montgomery val stress-val-montgomery --refine 0 1 --threshold 0.5 0.4 --clean fill
# On validation two opacity copies beat one, one refine pass beat none, and threshold 0.4 beat 0.5
# under opacities at equal clean Dice (cxrseg.evaluate picks the threshold on validation in the
# pipeline); the test images are scored with refine 1, both thresholds, with and without filling.
stress montgomery test stress-montgomery --refine 1 --threshold 0.5 0.4 --clean fill
finetune shenzhen copies2
finetune montgomery+shenzhen copies2

sets=()
for s in montgomery shenzhen; do
    sets+=(--set "$s=$LUNGSEG/$s/images:$LUNGSEG/$s/masks:$OUT/$s/splits.csv:$OUT/emb")
done
if [ ! -f "$OUT/cross.csv" ]; then
    rows=()
    rows+=(--row "zero-shot|montgomery|lite:$OUT/runs/montgomery-copies0")
    rows+=(--row "copies0|montgomery|$OUT/runs/montgomery-copies0")
    # the augmented runs at the threshold chosen for them on validation (0.4)
    rows+=(--row "copies1|montgomery|$OUT/runs/montgomery-copies1|0.4")
    rows+=(--row "copies2|montgomery|$OUT/runs/montgomery-copies2|0.4")
    rows+=(--row "copies2|shenzhen|$OUT/runs/shenzhen-copies2|0.4")
    rows+=(--row "copies2|montgomery+shenzhen|$OUT/runs/montgomery+shenzhen-copies2|0.4")
    say "cross-dataset table"
    $PY -m experiments.seg_cross_dataset "${sets[@]}" "${rows[@]}" --out "$OUT/cross.csv"
fi
# 5. Shape QC on the NIH sample (no ground truth): masks from the Montgomery-trained runs.
nih_qc() {  # nih_qc RECIPE THRESHOLD
    local dir=$OUT/nih-$1 run=$OUT/runs/montgomery-$1
    [ -f "$dir/masks/done_postprocess.json" ] && return 0
    [ -d "$NIH/images" ] || { echo "skip: $NIH/images not found"; return 0; }
    say "NIH sample: masks and shape QC ($1)"
    # cache, masks and post-processing at the study's size and radii (cxrseg.study_masks defaults)
    $PY -c 'import os, sys; from cxrcls.cache import build_cache
build_cache(sorted(os.listdir(sys.argv[1])), sys.argv[1], sys.argv[2])' \
        "$NIH/images" "$OUT/nih-cache"
    $PY -m cxrseg.predict --images "$OUT/nih-cache/images.npy" --index "$OUT/nih-cache/index.csv" \
        --checkpoint "$run/best.pt" --prior "$run/prior.json" --threshold "$2" --refine 1 \
        --fill-holes --out "$dir/masks/raw.npy" --device cpu
    $PY -m cxrseg.postprocess --masks "$dir/masks/raw.npy" --index "$OUT/nih-cache/index.csv" \
        --shape-prior "$run/shape_prior.json" \
        --images "$OUT/nih-cache/images.npy" --out "$dir/masks"
}
NIH=${NIH:-${LUNGSEG%/*}/nih_sample}
nih_qc copies0 0.5
nih_qc copies2 0.4
say "done: $OUT/cross.csv, $OUT/stress-*/stress.csv, stress.png, $OUT/nih-*/masks/qc.csv"

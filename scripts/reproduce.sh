#!/usr/bin/env bash
# Rerun the numbers of docs/results.md on Fashion-MNIST, section by section, into runs/.
#   scripts/reproduce.sh par                PAR at 64x64 (16x16 tokens): tokenizer, 6 AR models, evaluation,
#                                           decode speed, entropy analysis, report (about 1.5 h on 2 cores)
#   scripts/reproduce.sh par-models NAME... only these PAR models (train, sample, evaluate)
#   scripts/reproduce.sh ctf [NAME...]      CTF at 64x64: codebook clusters, coarse AR, refiner, evaluation
# Each step is skipped when its output exists, so an interrupted run continues where it stopped
# (the trainers themselves resume from their last checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
argen=.venv/bin/argen
classifier=checkpoints/fmnist64/classifier  # the fashion-mnist-cnn feature extractor (model card beside it)

done_or() {  # done_or OUTPUT COMMAND...: run COMMAND unless OUTPUT exists
    local output=$1; shift
    [[ -e $output ]] || "$@"
}

evaluate() {  # evaluate RUN OUT: 1000 samples (100 per class) and their metrics
    local run=$1 out=$2
    mkdir -p "$out"
    done_or "$out/samples.npz" $argen sample --model "$run/checkpoint" --count 1000 --batch 250 --cfg 2 \
        --temperature 0.8 --seed 0 --out "$out"
    done_or "$out/metrics.json" $argen eval "$out/samples.npz" --ref runs/fmnist64-reference.npz \
        --classifier $classifier --bootstrap 50 --out "$out/metrics.json"
}

# name, then the layout overrides of its training
PAR_MODELS="ar1x
par4 layout.order=region layout.parallel=4
par16 layout.order=region layout.parallel=16
raster4 layout.order=raster layout.parallel=4
par4-noinit layout.order=region layout.parallel=4 layout.sequential_initial=false
par4-causal layout.order=region layout.parallel=4 layout.group_attention=causal"

par_data() {
    done_or runs/fmnist64-tokenizer/checkpoint $argen tokenizer train --preset VQ-CPU-32 \
        --config configs/fmnist64-tokenizer.yaml --out runs/fmnist64-tokenizer
    done_or runs/fmnist64-tokenizer/eval $argen tokenizer eval --tokenizer runs/fmnist64-tokenizer/checkpoint \
        --count 2000 --out runs/fmnist64-tokenizer/eval
    done_or runs/fmnist64-cache $argen tokenize --tokenizer runs/fmnist64-tokenizer/checkpoint \
        --out runs/fmnist64-cache --limit 30000
    done_or runs/fmnist64-reference.npz $argen eval ref --classifier $classifier --split test --image-size 64 \
        --resize resize --pad-to 32 --out runs/fmnist64-reference.npz
}

par_models() {  # par_models [NAME...]: train and evaluate these models (default: all)
    local name overrides
    while read -r name overrides; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        # shellcheck disable=SC2086  # the overrides are separate words
        $argen train --preset GPT-S --config configs/fmnist64-ar.yaml --cache runs/fmnist64-cache \
            --out "runs/fmnist64-$name" $overrides
        evaluate "runs/fmnist64-$name" "runs/eval64/$name"
    done <<< "$PAR_MODELS"
}

par_analysis() {
    local name models=()
    for name in $(cut -d' ' -f1 <<< "$PAR_MODELS"); do
        models+=("$name=runs/fmnist64-$name/checkpoint")
        # Batch-1 decode speed of every model, back to back (compare them only within one run).
        [[ -e runs/eval64/$name/bench-b1.json ]] || $argen bench sample --model "runs/fmnist64-$name/checkpoint" \
            --batch 1 --repeats 3 --json > "runs/eval64/$name/bench-b1.json"
    done
    # PAR's entropy analysis on the 10,000 test images: dependency maps from the tokens, teacher-forced
    # entropy of every model against the sequential one.
    done_or runs/fmnist64-cache-test $argen tokenize --tokenizer runs/fmnist64-tokenizer/checkpoint --split test \
        --out runs/fmnist64-cache-test
    done_or runs/entropy64/entropy.json $argen analyze entropy --cache runs/fmnist64-cache-test \
        --models "${models[@]}" --out runs/entropy64
    $argen report --out runs/report-par --title "PAR on Fashion-MNIST 64x64" \
        --metrics runs/eval64/*/metrics.json --samples runs/eval64/{ar1x,par4,par16}/samples.npz \
        --analysis runs/entropy64
    .venv/bin/python scripts/results_table.py par
}

ctf_model() {  # ctf_model NAME TABLE CLUSTERS METHOD [AR layout overrides]: coarse AR NAME over the clusters TABLE
    # (one refiner per table: it learns from ground-truth coarse maps, whatever order the AR decodes in)
    local name=$1 table_name=$2 clusters=$3 method=$4; shift 4
    local table=runs/ctf64/$table_name.safetensors refiner=runs/fmnist64-$table_name-refiner out=runs/eval64/$name
    mkdir -p runs/ctf64 "$out"
    done_or "$table" $argen ctf cluster --tokenizer runs/fmnist64-tokenizer/checkpoint --clusters "$clusters" \
        --method "$method" --out "$table"
    $argen train --preset GPT-S --config configs/fmnist64-ar.yaml --cache runs/fmnist64-cache --coarse-table "$table" \
        --out "runs/fmnist64-$name" "$@"
    $argen ctf train-refiner --preset GPT-S --config configs/fmnist64-ar.yaml --cache runs/fmnist64-cache \
        --table "$table" --out "$refiner" refiner.coarse_noise=0.1
    done_or "$out/samples.npz" $argen sample --model "runs/fmnist64-$name/checkpoint" \
        --refiner "$refiner/checkpoint" --count 1000 --batch 250 --cfg 2 --temperature 0.8 --seed 0 --out "$out"
    done_or "$out/metrics.json" $argen eval "$out/samples.npz" --ref runs/fmnist64-reference.npz \
        --classifier $classifier --bootstrap 50 --out "$out/metrics.json"
}

# name, clusters table, clusters, clustering method (the codes are l2-normalised: spherical k-means),
# then the coarse AR's layout overrides
CTF_MODELS="ctf128 ctf128 128 spherical
ctf128-random ctf128-random 128 random
ctf128-random-par4 ctf128-random 128 random layout.order=region layout.parallel=4
ctf128-balanced ctf128-balanced 128 balanced"

ctf_models() {  # ctf_models [NAME...]: these CTF models (default: all)
    local name table clusters method overrides
    while read -r name table clusters method overrides; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        # shellcheck disable=SC2086  # the overrides are separate words
        ctf_model "$name" "$table" "$clusters" "$method" $overrides
    done <<< "$CTF_MODELS"
}

case "${1:-}" in
    par) par_data && par_models && par_analysis ;;
    # e.g. two trainings at a time on 2 cores, one thread each, then `scripts/reproduce.sh par` for the rest:
    #   OMP_NUM_THREADS=1 scripts/reproduce.sh par-models ar1x par4 par16 &
    #   OMP_NUM_THREADS=1 scripts/reproduce.sh par-models raster4 par4-noinit par4-causal
    par-models) shift; par_data && par_models "$@" ;;
    ctf) shift; par_data && ctf_models "$@" ;;
    *) echo "usage: scripts/reproduce.sh par | par-models NAME... | ctf" >&2; exit 2 ;;
esac

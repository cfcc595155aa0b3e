#!/usr/bin/env bash
# Rerun the numbers of docs/results.md on Fashion-MNIST, section by section, into runs/.
#   scripts/reproduce.sh par                PAR at 64x64 (16x16 tokens): tokenizer, 6 AR models, evaluation,
#                                           decode speed, entropy analysis, report (about 1.5 h on 2 cores)
#   scripts/reproduce.sh par-models NAME... only these PAR models (train, sample, evaluate)
#   scripts/reproduce.sh ctf [NAME...]      CTF at 64x64: codebook clusters, coarse AR, refiner, evaluation
#   scripts/reproduce.sh ctf-refiners [NAME...]  CTF's refiner size ablation
#   scripts/reproduce.sh ctf-temperatures   CTF's two sampling temperatures (sampling only)
#   scripts/reproduce.sh ctf-report         the CTF models next to the baseline in one HTML report
#   scripts/reproduce.sh ctf-bench          images/s of 1x, PAR-4x, CTF and CTF+PAR-4x at batch 1 and 64 (quiet machine)
#   scripts/reproduce.sh prologue [NAME...] Prologue at 64x64: stage 1 (joint, Post), caches, stage-3 ARs, evaluation
#   scripts/reproduce.sh prologue-evals     reconstruction with and without the prologue; baseline without guidance
#   scripts/reproduce.sh demo               the demo's models (every method at one size, Prologue + CTF + PAR-16x
#                                           combined, one more combination) on the shipped tokenizers: data,
#                                           training, guidance chosen on a validation split, test scores; then
#                                           `demo-ship` copies them into checkpoints/fmnist64 in fp16
#   scripts/reproduce.sh demo-train|demo-evaluate|demo-ship [NAME...]  only these demo models' training,
#                                           evaluation or shipping; with DEMO_STAGE=2 the 1500-step continuation
#   scripts/reproduce.sh demo-refiners [METHOD...]  CTF's refiner of each clustering (spherical, random)
#   scripts/reproduce.sh demo-ceilings      each CTF refiner on test images' true coarse maps (argen ctf ceiling)
#   scripts/reproduce.sh demo-large-refiner CTF's refiner larger than its coarse AR, trained and scored
#   scripts/reproduce.sh demo-bench         images/s of the shipped demo models at batch 1 and 40 (quiet machine)
#   scripts/reproduce.sh combined           the demo's combination at 3 M parameters (the PAR section's size)
#   scripts/reproduce.sh prologue-guidance  Prologue's split guidance on validation, the best on test; Prologue and 1x
#                                           without guidance; `prologue-guidance-ship` ships the best setting
#   scripts/reproduce.sh sjd                the shipped 1x sampled plainly and with speculative decoding, both scored
#   scripts/reproduce.sh perceptual         the demo's tokenizer with and without a perceptual loss (classifier features)
#   scripts/reproduce.sh video              PAR for video: moving Fashion-MNIST, tokenizer, classifier, 3 models
#   scripts/reproduce.sh video-models NAME... only these video models (train, sample, evaluate)
#   scripts/reproduce.sh video3d            17-frame moving Fashion-MNIST: per-frame vs causal 3D tokenizers, VQ and
#                                           LFQ (same 1024 codes), 1x, PAR-4x and PAR-16x on the 3D grid
#   scripts/reproduce.sh video3d-data       only its tokenizers, their evaluation, the token cache and the test videos
#   scripts/reproduce.sh video3d-models NAME...  only these of its three models (train, sample, evaluate; after the data)
#   scripts/reproduce.sh video3d-report     then their batch-1 speed (quiet machine), the report and the figure
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

shipped_setting() {  # shipped_setting CHECKPOINT: the --cfg and --temperature a shipped model records
    .venv/bin/python -c "import json; s = json.load(open('$1/config.json'))['sampling']; \
print(f\"--cfg {s['guidance']} --temperature {s['temperature']}\")"
}

evaluate() {  # evaluate RUN OUT [SAMPLE OPTIONS]: 1000 samples (100 per class) and their metrics; RUN is a run folder
    # or a checkpoint (a shipped model); the options replace the defaults (guidance 2, temperature 0.8) or add to
    # them (a CTF model's --refiner DIR). fp32, not the machine-dependent auto precision, so that the figures are
    # the same on every CPU.
    local model=$1 out=$2; shift 2
    [[ -d $model/checkpoint ]] && model=$model/checkpoint
    mkdir -p "$out"
    done_or "$out/samples.npz" $argen sample --model "$model" --count 1000 --batch 250 --cfg 2 \
        --temperature 0.8 --dtype fp32 --seed 0 --out "$out" "$@"
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

ctf_refiner() {  # ctf_refiner TABLE_NAME OUT [refiner overrides]: a refiner for the clusters TABLE_NAME
    local table=runs/ctf64/$1.safetensors out=$2; shift 2
    $argen ctf train-refiner --preset GPT-S --config configs/fmnist64-ar.yaml --cache runs/fmnist64-cache \
        --table "$table" --out "$out" refiner.coarse_noise=0.1 "$@"
}

ctf_table() {  # ctf_table TOKENIZER CLUSTERS METHOD OUT: cluster the tokenizer's codebook (once) into OUT
    mkdir -p "$(dirname "$4")"
    done_or "$4" $argen ctf cluster --tokenizer "$1" --clusters "$2" --method "$3" --out "$4"
}

ctf_model() {  # ctf_model NAME TABLE CLUSTERS METHOD [AR layout overrides]: coarse AR NAME over the clusters TABLE
    # (one refiner per table: it learns from ground-truth coarse maps, whatever order the AR decodes in)
    local name=$1 table_name=$2 clusters=$3 method=$4; shift 4
    local table=runs/ctf64/$table_name.safetensors refiner=runs/fmnist64-$table_name-refiner
    ctf_table runs/fmnist64-tokenizer/checkpoint "$clusters" "$method" "$table"
    $argen train --preset GPT-S --config configs/fmnist64-ar.yaml --cache runs/fmnist64-cache --coarse-table "$table" \
        --out "runs/fmnist64-$name" "$@"
    ctf_refiner "$table_name" "$refiner"
    evaluate "runs/fmnist64-$name" "runs/eval64/$name" --refiner "$refiner/checkpoint"
}

# name, clusters table, clusters, clustering method (the codes are l2-normalised: spherical k-means),
# then the coarse AR's layout overrides
CTF_MODELS="ctf128 ctf128 128 spherical
ctf128-random ctf128-random 128 random
ctf128-random-par4 ctf128-random 128 random layout.order=region layout.parallel=4
ctf128-balanced ctf128-balanced 128 balanced
ctf64-random ctf64-random 64 random
ctf256-random ctf256-random 256 random"

# Refiner size ablation on the ctf128-random coarse AR: name, then the refiner's model overrides
# (the base refiner is the coarse AR's size: 6 layers, width 192).
CTF_REFINERS="refiner-small model.n_layer=2 model.dim=96 model.n_head=2"

ctf_temperatures() {  # the two stages' temperatures, on the 128-random-groups models
    # (the default, coarse 0.8 and refiner 1.0, is runs/eval64/ctf128-random)
    evaluate runs/fmnist64-ctf128-random runs/eval64/ctf128-random-T1.0-R1.0 \
        --refiner runs/fmnist64-ctf128-random-refiner/checkpoint --temperature 1.0 --refine-temperature 1.0
}

bench() {  # bench MODEL OUT BATCH [--refiner DIR]: images/s (guidance 2, fp32) into OUT/bench-cfg-bBATCH.json
    local model=$1 out=$2 batch=$3; shift 3
    mkdir -p "$out"
    [[ -e $out/bench-cfg-b$batch.json ]] || $argen bench sample --model "$model" "$@" --batch "$batch" --cfg 2 \
        --repeats 3 --json > "$out/bench-cfg-b$batch.json"
}

ctf_bench() {  # images/s at batch 1 and 64 of the baselines and CTF, back to back
    local name refiner batch
    for name in ar1x par4 ctf128-random ctf128-random-par4; do
        refiner=()
        [[ $name == ctf* ]] && refiner=(--refiner runs/fmnist64-ctf128-random-refiner/checkpoint)
        for batch in 1 64; do
            bench "runs/fmnist64-$name/checkpoint" "runs/eval64/$name" $batch "${refiner[@]}"
        done
    done
}

demo_bench() {  # images/s at batch 1 and 40 (the demo's batch) of the shipped demo models, back to back
    local name folder tokenizer refiner batch
    while read -r name folder tokenizer; do
        refiner=()
        [[ $name == ctf ]] && refiner=(--refiner $DEMO/ctf-refiner)
        [[ $name == combined ]] && refiner=(--refiner $DEMO/ctf-refiner)  # the combination's table is CTF's
        for batch in 1 40; do
            bench "$DEMO/$folder" "runs/eval64/demo-$name" $batch "${refiner[@]}"
        done
    done <<< "$DEMO_SHIPPED"
}

ctf_refiners() {  # ctf_refiners [NAME...]: the refiner size ablation (default: all)
    local name overrides
    while read -r name overrides; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        # shellcheck disable=SC2086  # the overrides are separate words
        ctf_refiner ctf128-random "runs/fmnist64-ctf128-random-$name" $overrides
        evaluate runs/fmnist64-ctf128-random "runs/eval64/ctf128-random-$name" \
            --refiner "runs/fmnist64-ctf128-random-$name/checkpoint"
    done <<< "$CTF_REFINERS"
}

ctf_models() {  # ctf_models [NAME...]: these CTF models (default: all)
    local name table clusters method overrides
    while read -r name table clusters method overrides; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        # shellcheck disable=SC2086  # the overrides are separate words
        ctf_model "$name" "$table" "$clusters" "$method" $overrides
    done <<< "$CTF_MODELS"
}

# Prologue at 64x64: name of the stage-1 run, then its overrides of configs/fmnist64-prologue.yaml (joint
# fine-tuning from the PAR section's tokenizer; "post" keeps that tokenizer frozen; "k64": 64 prologue codes
# instead of 1024 and a 10x smaller entropy weight, so that the prologue ids can become predictable)
PROLOGUE_TOKENIZERS="prologue
prologue-post prologue.freeze_visual=true loss.restart_dead_codes_every=0
prologue-post-k64 prologue.freeze_visual=true loss.restart_dead_codes_every=0 prologue.entropy_weight=0.1 model.prologue_codebook_size=64
prologue-k64 prologue.entropy_weight=0.1 model.prologue_codebook_size=64"

prologue_stage1() {  # prologue_stage1 [NAME...]: stage 1 and the token caches (train and test) of these runs
    local name overrides
    while read -r name overrides; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        # shellcheck disable=SC2086  # the overrides are separate words
        $argen tokenizer train --preset VQ-CPU-32 --config configs/fmnist64-prologue.yaml \
            --out "runs/fmnist64-$name" $overrides
        done_or "runs/fmnist64-$name-cache" $argen tokenize --tokenizer "runs/fmnist64-$name/checkpoint" \
            --out "runs/fmnist64-$name-cache" --limit 30000
        done_or "runs/fmnist64-$name-cache-test" $argen tokenize --tokenizer "runs/fmnist64-$name/checkpoint" \
            --split test --out "runs/fmnist64-$name-cache-test"
    done <<< "$PROLOGUE_TOKENIZERS"
}

prologue_models() {  # prologue_models [NAME...]: stage 3 (a fresh AR on each cache) and its evaluation
    local name overrides out
    while read -r name overrides; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        out=runs/eval64/$name
        $argen train --preset GPT-S --config configs/fmnist64-ar.yaml --cache "runs/fmnist64-$name-cache" \
            --out "runs/fmnist64-$name-ar"
        evaluate "runs/fmnist64-$name-ar" "$out"
        evaluate "runs/fmnist64-$name-ar" "$out-noguidance" --cfg 1 --temperature 1
        prologue_analysis "runs/fmnist64-$name-ar" "$name" "$out"
    done <<< "$PROLOGUE_TOKENIZERS"
}

prologue_analysis() {  # prologue_analysis RUN STAGE1_NAME OUT: fixed-prologue rows and the linear probe
    local run=$1 cache=runs/fmnist64-$2-cache out=$3
    done_or "$out/fixed-prologue.png" $argen sample --model "$run/checkpoint" --fixed-prologue "$cache-test" \
        --count 10 --columns 9 --cfg 2 --temperature 0.8 --seed 0 --out "$out"
    done_or "$out/probe.json" $argen probe --cache "$cache" --test-cache "$cache-test" --out "$out/probe.json"
}

prologue_tokenizer_evals() {  # reconstruction (PSNR, rFID on 2000 test images) with and without the prologue
    local name
    for name in tokenizer prologue prologue-post prologue-k64; do
        done_or "runs/eval64/tokenizer-$name/metrics.json" $argen eval tokenizer \
            --tokenizer "runs/fmnist64-$name/checkpoint" --classifier $classifier --count 2000 \
            --out "runs/eval64/tokenizer-$name"
    done
    # the baseline AR without guidance, for the no-guidance comparison
    evaluate runs/fmnist64-ar1x runs/eval64/ar1x-noguidance --cfg 1 --temperature 1
}

# The demo's models (checkpoints/fmnist64, what `argen demo` loads): every method at one small size (width 128,
# 1.5 M parameters, configs/fmnist64-demo-ar.yaml), trained on the first 50,000 training images tokenized by the
# shipped tokenizers; images 50,000-59,999 are the validation split guidance is chosen on, the test split scores.
# The Prologue models read the shipped Post stage 1 (checkpoints/fmnist64/prologue-tokenizer): its visual path
# is the baseline tokenizer, frozen, so its CTF table has the baseline table's content and the combined model
# shares the CTF model's refiner.
DEMO=checkpoints/fmnist64
# The demo's Prologue stage 1 (checkpoints/fmnist64/prologue-tokenizer was shipped from this run) and combination
DEMO_PROLOGUE=prologue-post-k64
COMBINED_LAYOUT="layout.order=region layout.parallel=16 layout.sequential_initial=false layout.prologue_parallel=4"

# name, token cache (base or post), CTF (the codebook clustering of its coarse labels: spherical k-means as the
# CTF paper clusters, random as its negative ablation; - for fine ids), layout overrides; not shipped: the
# order ablations (region1x: one token per step in PAR-4x's order; raster4: four per step in raster order), the
# random-groups ablations (ctf-random, combined-random: what was shipped before k-means) and ctf-par16 (a
# combination attempt, docs/results.md)
# Two stages: 1 is configs/fmnist64-demo-ar.yaml (500 steps); 2 (DEMO_STAGE=2 before demo-train, demo-evaluate,
# demo-ship) continues each model from its stage-1 weights for 1500 more steps at lr 1e-3 cosine with a fresh
# warm-up (a warm restart), 2000 steps in all, 2.6 epochs of the 50,000 images; its runs end in -stage2.
DEMO_STAGE=${DEMO_STAGE:-1}
DEMO_SUFFIX=$([[ $DEMO_STAGE == 1 ]] || echo "-stage$DEMO_STAGE")
DEMO_MODELS="ar1x base -
region1x base - layout.order=region layout.regions=[2,2]
raster4 base - layout.order=raster layout.parallel=4
par4 base - layout.order=region layout.parallel=4
par16 base - layout.order=region layout.parallel=16
ctf base spherical
ctf-random base random
prologue post -
combined post spherical $COMBINED_LAYOUT
combined-random post random $COMBINED_LAYOUT
ctf-par16 base random layout.order=region layout.parallel=16 layout.sequential_initial=false
prologue-par16 post - layout.order=region layout.parallel=16 layout.sequential_initial=false layout.prologue_parallel=4"
# CTF's refiner, one per clustering, trained in stage 1 on the baseline's cache for as many steps as its coarse AR
# has in all (the random-groups one shipped until 2026-12-06 had 300: DEMO_REFINER_STEPS=300 ... demo-refiners
# random); the k-means one decodes both CTF and the combination (the Post tokenizer's table has the same content)
DEMO_REFINER_STEPS=${DEMO_REFINER_STEPS:-2000}
# The shipped ones: name, folder in checkpoints/fmnist64, the tokenizer folder it decodes with
DEMO_SHIPPED="ar1x ar-1x tokenizer
par4 ar-par4 tokenizer
par16 ar-par16 tokenizer
ctf ctf-ar tokenizer
prologue prologue-ar prologue-tokenizer
prologue-par16 prologue-par16-ar prologue-tokenizer
combined combined-ar prologue-tokenizer"

demo_data() {  # the two token caches (the baseline's of all training images), the CTF tables, the validation reference
    done_or runs/demo64-base-cache $argen tokenize --tokenizer $DEMO/tokenizer --out runs/demo64-base-cache
    done_or runs/demo64-post-cache $argen tokenize --tokenizer $DEMO/prologue-tokenizer \
        --out runs/demo64-post-cache --limit 50000
    local method
    for method in spherical random; do  # 128 clusters of the 1024 codes
        ctf_table $DEMO/tokenizer 128 $method runs/ctf64/demo-base-$method.safetensors
        ctf_table $DEMO/prologue-tokenizer 128 $method runs/ctf64/demo-post-$method.safetensors
    done
    # CTF's premise on the shipped tokenizer (docs/ctf.md): tokens swapped inside their cluster, per clustering
    done_or runs/ctf64/demo-base-redundancy.json $argen ctf redundancy --tokenizer $DEMO/tokenizer --clusters 128 \
        --count 500 --out runs/ctf64/demo-base-redundancy.json
    done_or runs/demo64-validation.npz $argen eval ref --classifier $classifier --split train --skip 50000 \
        --image-size 64 --resize resize --pad-to 32 --out runs/demo64-validation.npz
    done_or runs/fmnist64-reference.npz cp $DEMO/reference.npz runs/fmnist64-reference.npz
    # the floor: 1,000 real validation images scored as the models' samples are
    done_or runs/demo64-real-validation.npz .venv/bin/python scripts/real_samples.py --split train --skip 50000 \
        --count 1000 --image-size 64 --resize resize --pad-to 32 --out runs/demo64-real-validation.npz
    mkdir -p runs/eval64/demo-real-validation
    done_or runs/eval64/demo-real-validation/metrics.json $argen eval runs/demo64-real-validation.npz \
        --ref runs/fmnist64-reference.npz --classifier $classifier --bootstrap 50 \
        --out runs/eval64/demo-real-validation/metrics.json
}

demo_refiners() {  # demo_refiners [METHOD...]: the refiner of each clustering (default: spherical, random), on
    # the baseline's cache and table
    local method methods=("$@")
    (( $# )) || methods=(spherical random)
    for method in "${methods[@]}"; do
        demo_refiner "$method"
    done
}

demo_ceilings() {  # what CTF's fine stage alone costs: each refiner on 1,000 test images' true coarse maps
    # (the 300-step random-groups refiner, shipped until 2026-12-06 as combined-refiner/ and remade by
    # `DEMO_REFINER_STEPS=300 scripts/reproduce.sh demo-refiners random`, beside the k-means one trained as long as
    # its coarse AR)
    local name refiner out
    for name in spherical shipped-random; do
        refiner=runs/demo64-ctf-refiner-$name/checkpoint
        [[ $name == shipped-random ]] && refiner=runs/demo64-ctf-refiner-random/checkpoint
        out=runs/eval64/ceiling-$name
        done_or "$out/metrics.json" $argen ctf ceiling --refiner "$refiner" --tokenizer $DEMO/tokenizer \
            --count 1000 --out "$out"
        done_or "$out/scores.json" $argen eval "$out/samples.npz" --ref runs/fmnist64-reference.npz \
            --classifier $classifier --bootstrap 50 --out "$out/scores.json"
    done
}

demo_refiner() {  # demo_refiner METHOD [SUFFIX MODEL OVERRIDES...]: into runs/demo64-ctf-refiner-METHOD[SUFFIX]
    local method=$1 suffix=${2:-}
    shift $(( $# < 2 ? $# : 2 ))
    $argen ctf train-refiner --preset GPT-S --config configs/fmnist64-demo-ar.yaml --cache runs/demo64-base-cache \
        --table "runs/ctf64/demo-base-$method.safetensors" --out "runs/demo64-ctf-refiner-$method$suffix" \
        refiner.coarse_noise=0.1 train.steps=$DEMO_REFINER_STEPS "$@"
}

demo_large_refiner() {  # CTF's refiner larger than its coarse AR, as the CTF paper sizes its auxiliary model (about
    # 4x): width LARGE_REFINER_DIM (default 192: 2.9 M parameters, 2.2x the coarse AR's 1.3 M; 256 gives 5.1 M, 3.9x,
    # at 1.6x the time a step), trained 2,000 steps like the coarse AR; it decodes the shipped coarse AR at its
    # recorded setting and at the paper's, and true coarse maps (the ceiling); the shipped same-size refiner is
    # scored through the same commands beside it
    local dim=${LARGE_REFINER_DIM:-192}
    local refiner=runs/demo64-ctf-refiner-spherical-dim$dim out=runs/eval64/demo-ctf-refiner-dim$dim
    demo_refiner spherical "-dim$dim" "model.dim=$dim"
    local setting
    setting=$(shipped_setting $DEMO/ctf-ar)
    # shellcheck disable=SC2086  # the setting is options and their values
    evaluate $DEMO/ctf-ar "$out" --refiner $refiner/checkpoint $setting
    evaluate $DEMO/ctf-ar "$out/paper-setting" --refiner $refiner/checkpoint --cfg 2 --temperature 1.1 \
        --refine-temperature 1.1
    done_or "$out/ceiling/metrics.json" $argen ctf ceiling --refiner $refiner/checkpoint --tokenizer $DEMO/tokenizer \
        --count 1000 --out "$out/ceiling"
    done_or "$out/ceiling/scores.json" $argen eval "$out/ceiling/samples.npz" --ref runs/fmnist64-reference.npz \
        --classifier $classifier --bootstrap 50 --out "$out/ceiling/scores.json"
    # shellcheck disable=SC2086
    evaluate $DEMO/ctf-ar runs/eval64/demo-ctf-refiner-shipped --refiner $DEMO/ctf-refiner $setting
}

demo_train() {  # demo_train [NAME...]: train these demo models (default: all)
    local name cache ctf overrides options config
    while read -r name cache ctf overrides; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        options=()
        [[ $ctf == - ]] || options=(--coarse-table "runs/ctf64/demo-$cache-$ctf.safetensors")
        config=configs/fmnist64-demo-ar.yaml
        if [[ $DEMO_STAGE == 2 ]]; then  # a warm restart from the stage-1 weights
            config=configs/fmnist64-demo-stage2-ar.yaml
            options+=(train.init_from="runs/demo64-$name/checkpoint")
        fi
        # shellcheck disable=SC2086  # the overrides are separate words
        $argen train --preset GPT-S --config $config --cache "runs/demo64-$cache-cache" \
            --out "runs/demo64-$name$DEMO_SUFFIX" "${options[@]}" $overrides
    done <<< "$DEMO_MODELS"
}

# Guidance, temperature and weights (EMA or the last step's) of each demo model, chosen by the lowest
# classifier-FID of 400 samples on the validation split among the settings whose class accuracy there is at least
# 80 % (among all when none is; scripts/results_table.py choose). The grid reaches down to no guidance (1): on
# MNIST the lowest of the earlier grid, 1.5, was the best.
GUIDANCE_GRID="1 0.8 raw
1.25 0.8 raw
1.5 0.8 raw
2 0.8 raw
3 0.8 raw
4 0.8 raw
5 0.8 raw
2 0.65 raw
2 0.8 ema"

demo_evaluate() {  # demo_evaluate [NAME...]: choose guidance on the validation split, then score on the test split
    local name cache ctf overrides options cfg temperature weights out ema chosen
    while read -r name cache ctf overrides; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        options=()
        [[ $ctf == - ]] || options=(--refiner "runs/demo64-ctf-refiner-$ctf/checkpoint")
        while read -r cfg temperature weights; do
            out=runs/eval64/demo-$name$DEMO_SUFFIX/validation/cfg$cfg-t$temperature-$weights
            ema=()
            [[ $weights == ema ]] && ema=(--ema)
            mkdir -p "$out"
            done_or "$out/samples.npz" $argen sample --model "runs/demo64-$name$DEMO_SUFFIX/checkpoint" "${ema[@]}" --count 400 \
                --batch 200 --cfg "$cfg" --temperature "$temperature" --dtype fp32 --seed 1 --out "$out" "${options[@]}"
            done_or "$out/metrics.json" $argen eval "$out/samples.npz" --ref runs/demo64-validation.npz \
                --classifier $classifier --out "$out/metrics.json"
        done <<< "$GUIDANCE_GRID"
        out=runs/eval64/demo-$name$DEMO_SUFFIX
        chosen=$(.venv/bin/python scripts/results_table.py choose "$out/validation")
        if [[ $(cat "$out/chosen.txt" 2>/dev/null) != "$chosen" ]]; then  # a new choice: score it afresh
            rm -f "$out/samples.npz" "$out/metrics.json"
            echo "$chosen" > "$out/chosen.txt"
        fi
        # shellcheck disable=SC2086  # the choice is options and their values
        evaluate "runs/demo64-$name$DEMO_SUFFIX" "$out" "${options[@]}" $chosen
        if [[ $ctf != - ]]; then  # beside the choice, the CTF paper's own setting: guidance 2, tau1 = tau2 = 1.1
            evaluate "runs/demo64-$name$DEMO_SUFFIX" "$out/paper-setting" "${options[@]}" --cfg 2 --temperature 1.1 \
                --refine-temperature 1.1
            # and the refiner's softmax restricted to each position's sampled cluster, at both settings
            # shellcheck disable=SC2086  # the choice is options and their values
            evaluate "runs/demo64-$name$DEMO_SUFFIX" "$out/restricted" "${options[@]}" $chosen --refine-restrict
            evaluate "runs/demo64-$name$DEMO_SUFFIX" "$out/paper-setting-restricted" "${options[@]}" --cfg 2 \
                --temperature 1.1 --refine-temperature 1.1 --refine-restrict
        fi
    done <<< "$DEMO_MODELS"
}

combined_3m() {  # the demo's combination at the PAR section's size (3 M parameters, its bf16 recipe), decoded by
    # the CTF section's refiner of that size (the Post table has the baseline table's content)
    local table=runs/ctf64/$DEMO_PROLOGUE-ctf128-random.safetensors refiner=runs/fmnist64-ctf128-random-refiner
    prologue_stage1 $DEMO_PROLOGUE
    ctf_table runs/fmnist64-tokenizer/checkpoint 128 random runs/ctf64/ctf128-random.safetensors
    ctf_table "runs/fmnist64-$DEMO_PROLOGUE/checkpoint" 128 random "$table"
    ctf_refiner ctf128-random $refiner
    # shellcheck disable=SC2086  # the overrides are separate words
    $argen train --preset GPT-S --config configs/fmnist64-ar.yaml --cache "runs/fmnist64-$DEMO_PROLOGUE-cache" \
        --coarse-table "$table" --out runs/fmnist64-combined $COMBINED_LAYOUT
    evaluate runs/fmnist64-combined runs/eval64/combined --refiner $refiner/checkpoint
    evaluate runs/fmnist64-combined runs/eval64/combined-noguidance --refiner $refiner/checkpoint \
        --cfg 1 --temperature 1
}

demo_ship() {  # demo_ship [NAME...]: copy these demo models (default: all) into checkpoints/fmnist64 (fp16) beside
    # the tokenizers and the classifier, each with the weights and sampling settings chosen on the validation split
    local ship=".venv/bin/python scripts/ship.py" name folder tokenizer
    while read -r name folder tokenizer; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        # shellcheck disable=SC2046  # the choice is options and their values
        $ship "runs/demo64-$name$DEMO_SUFFIX/checkpoint" "$DEMO/$folder" --fp16 --tokenizer "../$tokenizer" \
            $(.venv/bin/python scripts/results_table.py choose "runs/eval64/demo-$name$DEMO_SUFFIX/validation")
    done <<< "$DEMO_SHIPPED"
    if (( ! $# )) || [[ " $* " == *" ctf "* ]]; then  # the refiner of CTF and of the combination
        $ship runs/demo64-ctf-refiner-spherical/checkpoint $DEMO/ctf-refiner --fp16 --tokenizer ../tokenizer
    fi
    du -sh checkpoints
}

# Prologue's split guidance as its paper uses it (issue 31): a constant s_p < 1 on the prologue tokens, a cosine ramp
# of power p on the visual ones, against the single constant the demo chose (guidance 2 on both), on the validation
# split (400 samples each, temperature 0.8); the best by the demo's rule (scripts/results_table.py best) scored on
# the test split; then the paper's headline comparison, Prologue and the same-size 1x without guidance, on the test
# split. Name, then the sampling options.
PROLOGUE_GUIDANCE="constant-2 --cfg 2
split-p0.7-v2-cos0.25 --prologue-cfg 0.7 --cfg 2 --cfg-schedule cosine --cfg-power 0.25
split-p0.7-v3-cos0.25 --prologue-cfg 0.7 --cfg 3 --cfg-schedule cosine --cfg-power 0.25
split-p0.7-v4-cos0.25 --prologue-cfg 0.7 --cfg 4 --cfg-schedule cosine --cfg-power 0.25
split-p0.8-v3-cos0.25 --prologue-cfg 0.8 --cfg 3 --cfg-schedule cosine --cfg-power 0.25
split-p0.6-v3-cos0.25 --prologue-cfg 0.6 --cfg 3 --cfg-schedule cosine --cfg-power 0.25"
prologue_guidance() {
    local name options out folder
    while read -r name options; do
        out=runs/eval64/prologue-guidance/$name
        mkdir -p "$out"
        # shellcheck disable=SC2086  # the options are separate words
        done_or "$out/samples.npz" $argen sample --model $DEMO/prologue-ar --count 400 --batch 200 --temperature 0.8 \
            --dtype fp32 --seed 1 --out "$out" $options
        done_or "$out/metrics.json" $argen eval "$out/samples.npz" --ref runs/demo64-validation.npz \
            --classifier $classifier --out "$out/metrics.json"
    done <<< "$PROLOGUE_GUIDANCE"
    local best
    best=$(.venv/bin/python scripts/results_table.py best runs/eval64/prologue-guidance)
    out=runs/eval64/prologue-guidance-test/$best
    mkdir -p "$out"
    # shellcheck disable=SC2046  # the chosen row's options are separate words
    done_or "$out/samples.npz" $argen sample --model $DEMO/prologue-ar --count 1000 --batch 250 --temperature 0.8 \
        --dtype fp32 --seed 0 --out "$out" $(grep "^$best " <<< "$PROLOGUE_GUIDANCE" | cut -d" " -f2-)
    done_or "$out/metrics.json" $argen eval "$out/samples.npz" --ref runs/fmnist64-reference.npz \
        --classifier $classifier --bootstrap 50 --out "$out/metrics.json"
    for folder in prologue-ar ar-1x; do  # no guidance, temperature 1: the paper's headline comparison
        out=runs/eval64/noguidance-$folder
        mkdir -p "$out"
        done_or "$out/samples.npz" $argen sample --model "$DEMO/$folder" --count 1000 --batch 250 --cfg 1 \
            --temperature 1 --dtype fp32 --seed 0 --out "$out"
        done_or "$out/metrics.json" $argen eval "$out/samples.npz" --ref runs/fmnist64-reference.npz \
            --classifier $classifier --bootstrap 50 --out "$out/metrics.json"
    done
}

prologue_guidance_ship() {  # the test-scored split guidance becomes the shipped Prologue's sampling settings
    local best settings
    best=$(.venv/bin/python scripts/results_table.py best runs/eval64/prologue-guidance)
    settings=$(.venv/bin/python -c "import json; s = json.load(open('runs/eval64/prologue-guidance-test/$best/\
sampling.json')); print(json.dumps({k: s[k] for k in ('guidance', 'guidance_schedule', 'guidance_power', \
'temperature')}))")
    .venv/bin/python scripts/ship.py $DEMO/prologue-ar --restamp --sampling "$settings"
}

# Speculative Jacobi decoding keeps the distribution (docs/speed.md): 1,000 test samples of a shipped model at its
# shipped guidance and temperature, plain and with SJD, scored alike. Name, folder, window, SJD's batch (a window
# feeds W steps of every row, and a batch advances with its slowest row, so SJD samples in small batches).
SJD_MODELS="1x ar-1x 8 25
par4 ar-par4 8 25
par16 ar-par16 8 25
prologue-par16 prologue-par16-ar 8 25"
sjd() {
    local name folder window batch settings out w
    while read -r name folder window batch; do
        settings=$(shipped_setting "$DEMO/$folder")
        for w in 0 "$window"; do
            out=runs/eval64/sjd-$name-w$w
            mkdir -p "$out"
            # shellcheck disable=SC2086  # the settings are options and their values
            done_or "$out/samples.npz" $argen sample --model "$DEMO/$folder" --count 1000 \
                --batch "$([[ $w == 0 ]] && echo 250 || echo "$batch")" --dtype fp32 --seed 0 --speculative "$w" \
                $settings --out "$out"
            done_or "$out/metrics.json" $argen eval "$out/samples.npz" --ref runs/fmnist64-reference.npz \
                --classifier $classifier --bootstrap 50 --out "$out/metrics.json"
        done
    done <<< "$SJD_MODELS"
}

# The tokenizer with and without a perceptual loss (issue 32): the demo's tokenizer recipe twice, the same steps and
# data, once with the perceptual term at weight 1.0. Its network is the project classifier's features (LPIPS's
# distance without learned weights): no VGG16 file is at hand offline. Scored on 2,000 test images, then a 1x AR
# (the demo's stage-1 recipe) trained on each tokenizer's codes and scored as every demo model.
perceptual() {
    local name
    for name in plain perceptual; do
        local options=()
        [[ $name == perceptual ]] && options=(loss.perceptual_network=$classifier loss.perceptual_weight=1.0)
        done_or "runs/fmnist64-tokenizer-$name/checkpoint" $argen tokenizer train --preset VQ-CPU-32 \
            --config configs/fmnist64-tokenizer.yaml --out "runs/fmnist64-tokenizer-$name" "${options[@]}"
        done_or "runs/fmnist64-tokenizer-$name/eval/metrics.json" $argen tokenizer eval \
            --tokenizer "runs/fmnist64-tokenizer-$name/checkpoint" --classifier $classifier --count 2000 \
            --out "runs/fmnist64-tokenizer-$name/eval"
        # generation on each tokenizer's codes: the demo's 1x recipe (stage 1, 500 steps) on its first 50,000 images
        done_or "runs/fmnist64-tokenizer-$name-cache" $argen tokenize \
            --tokenizer "runs/fmnist64-tokenizer-$name/checkpoint" --out "runs/fmnist64-tokenizer-$name-cache" \
            --limit 50000
        $argen train --preset GPT-S --config configs/fmnist64-demo-ar.yaml \
            --cache "runs/fmnist64-tokenizer-$name-cache" --out "runs/demo64-ar1x-tokenizer-$name"  # resumes
        evaluate "runs/demo64-ar1x-tokenizer-$name" "runs/eval64/perceptual-ar1x-$name"
    done
}

# Video: moving Fashion-MNIST, 4 frames of 32x32 -> (4, 8, 8) token grids; name, then the layout overrides
VIDEO_MODELS="1x
par4 layout.order=region layout.parallel=4
par16 layout.order=region layout.parallel=16"

video_data() {
    done_or runs/mfm-tokenizer/checkpoint $argen tokenizer train --preset VQ-CPU-32 --config configs/mfm-tokenizer.yaml \
        --out runs/mfm-tokenizer
    done_or runs/mfm-classifier/checkpoint $argen eval train-classifier --config configs/mfm-classifier.yaml \
        --out runs/mfm-classifier
    done_or runs/mfm-tokenizer/eval/metrics.json $argen eval tokenizer --tokenizer runs/mfm-tokenizer/checkpoint \
        --classifier runs/mfm-classifier/checkpoint --count 4000 --out runs/mfm-tokenizer/eval
    done_or runs/mfm-cache $argen tokenize --tokenizer runs/mfm-tokenizer/checkpoint --out runs/mfm-cache --limit 30000
    done_or runs/mfm-test.npz $argen video make-dataset --tokenizer runs/mfm-tokenizer/checkpoint --split test \
        --count 1000 --out runs/mfm-test.npz
}

video_models() {  # video_models [NAME...]: train, sample (500 videos) and evaluate these models (default: all)
    local name overrides out
    while read -r name overrides; do
        if (( $# )) && [[ " $* " != *" $name "* ]]; then continue; fi
        out=runs/evalmfm/$name
        mkdir -p "$out"
        # shellcheck disable=SC2086  # the overrides are separate words
        $argen train --preset GPT-S --config configs/mfm-ar.yaml --cache runs/mfm-cache --out "runs/mfm-$name" \
            $overrides
        done_or "$out/videos.npz" $argen sample --model "runs/mfm-$name/checkpoint" --count 500 --batch 250 --cfg 2 \
            --temperature 0.8 --seed 0 --out "$out"
        done_or "$out/metrics.json" $argen eval video "$out/videos.npz" --real runs/mfm-test.npz \
            --classifier runs/mfm-classifier/checkpoint --out "$out/metrics.json"
    done <<< "$VIDEO_MODELS"
}

video_analysis() {  # batch-1 decode speed of the three, back to back, and the report with the GIFs
    local name media=()
    for name in $(cut -d' ' -f1 <<< "$VIDEO_MODELS"); do
        [[ -e runs/evalmfm/$name/bench-b1.json ]] || $argen bench sample --model "runs/mfm-$name/checkpoint" \
            --batch 1 --repeats 3 --json > "runs/evalmfm/$name/bench-b1.json"
        media+=("$name=runs/evalmfm/$name/samples.gif")
    done
    $argen report --out runs/report-video --title "PAR for video: moving Fashion-MNIST" \
        --metrics runs/evalmfm/*/metrics.json --media "${media[@]}"
}

# Video 3D: 17 frames of 32x32; the per-frame tokenizer's (17, 8, 8) grids against the causal 3D tokenizer's (5, 8, 8)
# with a looked-up codebook (VQ, inflated from the per-frame one) and with lookup-free quantisation (LFQ, from
# scratch), all three at 1024 codes, the 3D ones at the same budget. The AR models run on one 3D tokenizer's grid
# (VIDEO3D_TOKENIZER, the VQ one by default: it reconstructs better), 320 tokens a video; the per-frame grid's
# 1088-token sequences are compared only as a tokenizer. Name, then the layout overrides:
VIDEO3D_MODELS="1x
par4 layout.order=region layout.parallel=4
par16 layout.order=region layout.parallel=16"

video3d_tokenizers() {  # the classifier, the three tokenizers and their reconstruction of the same 500 test clips
    done_or runs/mfm-classifier/checkpoint $argen eval train-classifier --config configs/mfm-classifier.yaml \
        --out runs/mfm-classifier
    done_or runs/mfm17-tokenizer/checkpoint $argen tokenizer train --preset VQ-CPU-32 \
        --config configs/mfm17-tokenizer.yaml --out runs/mfm17-tokenizer
    local name
    for name in causal3d causal3d-lfq; do
        done_or "runs/mfm17-$name-tokenizer/checkpoint" $argen tokenizer train --preset VQ3D-CPU-32 \
            --config "configs/mfm17-$name-tokenizer.yaml" --out "runs/mfm17-$name-tokenizer"
    done
    # the same 500 test clips: 8,500 frames for the per-frame tokenizer, 500 clips for the 3D ones
    done_or runs/mfm17-tokenizer/eval/metrics.json $argen tokenizer eval --tokenizer runs/mfm17-tokenizer/checkpoint \
        --count 8500 --out runs/mfm17-tokenizer/eval
    for name in causal3d causal3d-lfq; do
        done_or "runs/mfm17-$name-tokenizer/eval/metrics.json" $argen tokenizer eval \
            --tokenizer "runs/mfm17-$name-tokenizer/checkpoint" --count 500 --out "runs/mfm17-$name-tokenizer/eval"
    done
}

video3d_data() {  # the AR models' token cache (12,800 training clips), 1,000 real test and training videos
    local tokenizer=runs/${VIDEO3D_TOKENIZER:-mfm17-causal3d-tokenizer}/checkpoint
    done_or runs/mfm17-3d-cache $argen tokenize --tokenizer "$tokenizer" --out runs/mfm17-3d-cache --limit 12800
    local split
    for split in test train; do  # the real videos the samples are scored against, and the training ones scored too
        done_or "runs/mfm17-$split.npz" $argen video make-dataset --tokenizer "$tokenizer" --split $split \
            --count 1000 --out "runs/mfm17-$split.npz"
    done
}

video3d_models() {  # video3d_models NAME...: train, sample (1,000 videos) and evaluate these of VIDEO3D_MODELS
    local name overrides out
    while read -r name overrides; do
        [[ " $* " == *" $name "* ]] || continue
        out=runs/evalmfm17/$name
        mkdir -p "$out"
        # shellcheck disable=SC2086  # the overrides are separate words
        $argen train --preset GPT-S --config configs/mfm17-ar.yaml --cache runs/mfm17-3d-cache \
            --out "runs/mfm17-$name" $overrides
        done_or "$out/videos.npz" $argen sample --model "runs/mfm17-$name/checkpoint" --count 1000 --batch 100 \
            --cfg 2 --temperature 0.8 --seed 0 --out "$out"
        done_or "$out/metrics.json" $argen eval video "$out/videos.npz" --real runs/mfm17-test.npz \
            --classifier runs/mfm-classifier/checkpoint --bootstrap 50 --out "$out/metrics.json"
    done <<< "$VIDEO3D_MODELS"
}

video3d_report() {  # batch-1 decode speed of the three (back to back, quiet machine), the report and the figure
    local name media=()
    # the floor of every metric: 1,000 real training videos scored as the samples are
    mkdir -p runs/evalmfm17/real
    done_or runs/evalmfm17/real/metrics.json $argen eval video runs/mfm17-train.npz --real runs/mfm17-test.npz \
        --classifier runs/mfm-classifier/checkpoint --bootstrap 50 --out runs/evalmfm17/real/metrics.json
    for name in $(cut -d' ' -f1 <<< "$VIDEO3D_MODELS"); do
        [[ -e runs/evalmfm17/$name/bench-b1.json ]] || $argen bench sample --model "runs/mfm17-$name/checkpoint" \
            --batch 1 --repeats 3 --json > "runs/evalmfm17/$name/bench-b1.json"
        media+=("$name=runs/evalmfm17/$name/samples.gif")
    done
    $argen report --out runs/report-video3d --title "Causal 3D tokenizer: moving Fashion-MNIST, 17 frames" \
        --metrics runs/evalmfm17/*/metrics.json --media "${media[@]}"
    # docs/figures/video3d-strips.png: the first video of four classes, real and each model's
    .venv/bin/python scripts/video_figure.py --out runs/report-video3d/strips.png --classes 0,1,5,7 \
        real=runs/mfm17-test.npz 1x=runs/evalmfm17/1x/videos.npz PAR-4x=runs/evalmfm17/par4/videos.npz \
        PAR-16x=runs/evalmfm17/par16/videos.npz
}

case "${1:-}" in
    par) par_data && par_models && par_analysis ;;
    # e.g. two trainings at a time on 2 cores, one thread each, then `scripts/reproduce.sh par` for the rest:
    #   OMP_NUM_THREADS=1 scripts/reproduce.sh par-models ar1x par4 par16 &
    #   OMP_NUM_THREADS=1 scripts/reproduce.sh par-models raster4 par4-noinit par4-causal
    par-models) shift; par_data && par_models "$@" ;;
    ctf) shift; par_data && ctf_models "$@" ;;
    ctf-refiners) shift; par_data && ctf_models ctf128-random && ctf_refiners "$@" ;;
    ctf-temperatures) par_data && ctf_models ctf128-random && ctf_temperatures ;;
    ctf-bench) ctf_bench ;;
    demo-bench) demo_bench ;;
    combined) par_data && combined_3m ;;
    ctf-report) $argen report --out runs/report-ctf --title "CTF on Fashion-MNIST 64x64" \
        --metrics runs/eval64/{ar1x,ctf*}/metrics.json \
        --samples runs/eval64/{ar1x,ctf128-random,ctf256-random,ctf128-random-par4,ctf128}/samples.npz ;;
    prologue) shift; par_data && prologue_stage1 "$@" && prologue_models "$@" ;;
    prologue-evals) par_data && prologue_tokenizer_evals ;;
    demo) demo_data && demo_train && demo_refiners && demo_evaluate ;;
    demo-data) demo_data ;;
    demo-train) shift; demo_train "$@" ;;
    demo-refiners) shift; demo_refiners "$@" ;;
    demo-ceilings) demo_ceilings ;;
    demo-large-refiner) demo_data && demo_large_refiner ;;
    demo-evaluate) shift; demo_evaluate "$@" ;;
    demo-ship) shift; demo_ship "$@" ;;
    perceptual) perceptual ;;
    sjd) sjd ;;
    prologue-guidance) demo_data && prologue_guidance ;;
    prologue-guidance-ship) prologue_guidance_ship ;;
    video) shift; video_data && video_models && video_analysis ;;
    video-models) shift; video_data && video_models "$@" ;;
    video3d) video3d_tokenizers && video3d_data && video3d_models $(cut -d' ' -f1 <<< "$VIDEO3D_MODELS") \
        && video3d_report ;;
    # `video3d` in parts, e.g. the three models at the same time, one thread each, after the data:
    #   scripts/reproduce.sh video3d-data; OMP_NUM_THREADS=1 scripts/reproduce.sh video3d-models 1x & (par4, par16);
    #   then scripts/reproduce.sh video3d-report
    video3d-data) video3d_tokenizers && video3d_data ;;
    video3d-models) shift; video3d_models "$@" ;;
    video3d-report) video3d_report ;;
    *) echo "usage: scripts/reproduce.sh par | par-models NAME... | ctf [NAME...] | ctf-refiners [NAME...] |" \
            "ctf-temperatures | ctf-bench | ctf-report | prologue [NAME...] | prologue-evals | demo | demo-train|demo-evaluate [NAME...] | demo-refiners [METHOD...] | demo-ceilings | demo-large-refiner | demo-ship | perceptual | sjd | prologue-guidance | video | video-models NAME... | video3d | video3d-data | video3d-models NAME... | video3d-report" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Training-step throughput of yolopipe against PyTorch + Ultralytics, in one invocation on one GPU:
# for each model, `yolopipe train experiments/bench/step-yolov8<m>.yaml` (one process, synthetic
# shapes, stops at train.max_steps and prints its median batch time) and, for each precision,
# step_pytorch.py (Ultralytics' DetectionModel, v8DetectionLoss, AdamW, EMA). Prints a table and
# appends it to a CSV file. --family swaps the model YAML on both sides (yolo11, yolo12, ...).
# README.md beside this script says what the numbers mean.
#
# Usage: experiments/bench/train_step.sh [options]        (from anywhere; runs in the repository root)
#   --models "n s"             scales of the family
#   --family yolov8            the model YAML experiments/models/<family>.yaml both sides build (yolov8,
#                              yolo11, yolo12, yolov5, ...: any detection file with scales whose head
#                              yolopipe trains)
#   --batch 16 --imgsz 640     images per step, input side
#   --steps 50 --warmup 10     timed steps after untimed ones (yolopipe: max_steps = warmup + steps,
#                              and its median covers every batch but the first)
#   --precisions "fp32 tf32 bf16"   PyTorch's modes (step_pytorch.py --precision)
#   --yolopipe-precisions "tf32 bf16"  yolopipe's device.precision values (also fp32, fp16)
#   --frameworks "yolopipe pytorch" which sides to run
#   --device cuda|cpu          cpu: yolopipe's CPU backend and PyTorch on the CPU, e.g.
#                              --device cpu --imgsz 320 --batch 8 --steps 6 --warmup 2 --precisions fp32
#                              --yolopipe-precisions fp32 --threads "1 2"
#   --threads "1 2"            run everything once per CPU thread count (OMP_NUM_THREADS for both sides:
#                              yolopipe's kernels and oneDNN, PyTorch's intra-op pool); default: each
#                              side's own default (all cores)
#   --gpu 0                    the GPU both sides use (CUDA_VISIBLE_DEVICES) and nvidia-smi samples
#   --python python3           the Python with torch and ultralytics (default $PYTHON, else python3)
#   --yolopipe build/yolopipe  the binary
#   --csv experiments/bench/results/train_step.csv
#   --profiles DIR             per-layer times: keep each yolopipe run's profile.csv and log there, as
#                              yolopipe-<family><m>-<precision>[-t<threads>].{csv,log}, profile PyTorch's
#                              layers with its autograd profiler into pytorch-<...>.csv
#                              (step_pytorch.py --layers-csv), and print the two side by side
# Exit status 1 when a run failed (its row says why; the other rows are still measured and written).
set -euo pipefail
cd "$(dirname "$0")/../.."

models="n s" family=yolov8 batch=16 imgsz=640 steps=50 warmup=10
precisions="fp32 tf32 bf16" yp_precisions="tf32 bf16" frameworks="yolopipe pytorch"
device=cuda gpu=0 python=${PYTHON:-python3} yolopipe=build/yolopipe
csv=experiments/bench/results/train_step.csv profiles= threads=
usage() { sed -n '/^# Usage/,/^# Exit/s/^# \{0,1\}//p' "$0"; }
while (($#)); do
    [[ $1 == -h || $1 == --help ]] && { usage; exit 0; }
    (($# >= 2)) || { echo "train_step.sh: $1 needs a value" >&2; usage >&2; exit 2; }
    case $1 in
    --models) models=$2 ;;
    --family) family=$2 ;;
    --batch) batch=$2 ;;
    --imgsz) imgsz=$2 ;;
    --steps) steps=$2 ;;
    --warmup) warmup=$2 ;;
    --precisions) precisions=$2 ;;
    --yolopipe-precisions) yp_precisions=$2 ;;
    --frameworks) frameworks=$2 ;;
    --device) device=$2 ;;
    --gpu) gpu=$2 ;;
    --python) python=$2 ;;
    --yolopipe) yolopipe=$2 ;;
    --csv) csv=$2 ;;
    --profiles) profiles=$2 ;;
    --threads) threads=$2 ;;
    *) echo "train_step.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift 2
done
for v in batch imgsz steps warmup gpu; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "train_step.sh: --$v must be a whole number, found '${!v}'" >&2; exit 2; }
done
for t in $threads; do
    [[ $t =~ ^[1-9][0-9]*$ ]] || { echo "train_step.sh: --threads must list whole numbers >= 1, found '$t'" >&2; exit 2; }
done
[[ -z $profiles ]] || mkdir -p "$profiles" || exit 2
((batch >= 1 && steps >= 1 && imgsz >= 32 && imgsz % 32 == 0)) ||
    { echo "train_step.sh: need --batch >= 1, --steps >= 1 and --imgsz a multiple of 32" >&2; exit 2; }
[[ $family =~ ^[A-Za-z0-9._-]+$ && -f experiments/models/$family.yaml ]] ||
    { echo "train_step.sh: --family must name a model YAML in experiments/models/, found '$family'" >&2; exit 2; }
[[ $device == cuda || $device == cpu ]] || { echo "train_step.sh: --device must be cuda or cpu, found '$device'" >&2; exit 2; }
[[ " $frameworks " == *" yolopipe "* ]] && run_yp=1 || run_yp=0
[[ " $frameworks " == *" pytorch "* ]] && run_pt=1 || run_pt=0
if ((run_yp)) && [[ ! -x $yolopipe ]]; then
    echo "train_step.sh: $yolopipe not found: build it first (scripts/build.sh build)" >&2
    exit 2
fi
if ((run_pt)) && ! "$python" -c 'import torch, ultralytics' 2>/dev/null; then
    echo "train_step.sh: $python cannot import torch and ultralytics (give --python)" >&2
    exit 2
fi

export CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=$gpu  # the same GPU for both sides and nvidia-smi
smi=0
[[ $device == cuda ]] && command -v nvidia-smi >/dev/null && smi=1
if ((smi)); then
    device_name=$(nvidia-smi --query-gpu=name --format=csv,noheader -i "$gpu")
elif [[ $device == cuda ]]; then
    device_name="GPU $gpu (nvidia-smi not found: no memory figures)"
else
    # nproc counts OMP_NUM_THREADS, so the cores are counted here, before --threads sets it.
    cpu_name="cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" cpu_cores=$(nproc)
    device_name="$cpu_name, $cpu_cores threads"
fi
# YP_COMMIT names the commit where the checkout has no current .git (the GPU machine's copy).
commit=${YP_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
tmp=$(mktemp -d)
sampler=
# shellcheck disable=SC2317  # the EXIT trap calls it
cleanup() {
    [[ -n $sampler ]] && kill "$sampler" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# The synthetic images (data/bench, read through experiments/bench/data-nc80.yaml): generated at the
# input size, with more images than the longest run needs so that no run reaches an epoch's end
# (which would validate). synth writes its own command as the first line of data.yaml: reuse the
# folder when it was made with at least as many images at this size.
need=$(((warmup + steps + 2) * batch))
ensure_data() {
    local made train size
    made=$(head -1 data/bench/data.yaml 2>/dev/null || true)
    train=$(grep -o -- '--train [0-9]*' <<<"$made" | grep -o '[0-9]*$' || echo 0)
    size=$(grep -o -- '--imgsz [0-9]*' <<<"$made" | grep -o '[0-9]*$' || echo 0)
    if ((train < need || size != imgsz)); then
        "$yolopipe" synth --out data/bench --imgsz "$imgsz" --train "$need" --val 16 --force >"$tmp/synth.log" 2>&1 ||
            { cat "$tmp/synth.log" >&2; exit 1; }
    fi
}

# Peak GPU memory of one run: the device's used memory, sampled every 100 ms by nvidia-smi, minus
# what was used before the run. Whole-device numbers, because containers often hide the per-process
# list (--query-compute-apps); the GPU must be otherwise idle. They include the CUDA context, cuDNN
# and cuBLAS workspaces: the same measure for both sides.
mem_start() {
    ((smi)) || return 0
    mem_base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu")
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu" -lms 100 >"$tmp/mem.log" &
    sampler=$!
}
mem_stop() {  # sets peak (MiB; empty without nvidia-smi)
    peak=
    ((smi)) || return 0
    kill "$sampler" 2>/dev/null || true  # nvidia-smi may have ended on its own
    wait "$sampler" || true
    sampler=
    peak=$(awk -v base="$mem_base" '$1 + 0 > max { max = $1 + 0 } END { if (max) print max - base }' "$tmp/mem.log")
}

# A failed run's message: the last line it wrote to stderr (yolopipe's "file:line:col: ...", Python's
# exception), else to stdout. $1: the log without its .err suffix.
failure() {
    local f=$1.err
    grep -q '[^[:space:]]' "$f" || f=$1
    echo "failed: $(grep -v '^[[:space:]]*$' "$f" | tail -1 | tr '|\r' '/ ' | cut -c1-300)"
    echo "$2 failed; its output:" >&2
    tail -n 5 "$1" "$1.err" >&2
}

run_yolopipe() {  # model precision
    local m=$1 p=$2 log=$tmp/yolopipe-$1-$2.log line='' median='' n='' ips='' layers='' note='' run_dir
    local re='median ([0-9.]+) ms over ([0-9]+) batches \(([0-9.]+) images/s\)'
    # The step itself (forward, backward, loss, optimizer), without the wait for the data loader.
    local compute_re='measured compute time: median ([0-9.]+) ms per batch without waiting for data \(([0-9.]+) images/s\)'
    mem_start
    if "$yolopipe" train "experiments/bench/step-yolov8$m.yaml" --set "model=$PWD/experiments/models/$family.yaml" \
        --set "train.max_steps=$((warmup + steps))" --set "train.batch=$batch" --set "train.nbs=$batch" \
        --set "train.imgsz=$imgsz" --set "device.backend=$device" --set "device.precision=$p" \
        --set "output.dir=$tmp/runs" >"$log" 2>"$log.err"; then
        line=$(grep 'measured batch time:' "$log" || true)
    fi
    mem_stop
    if [[ $line =~ $re ]]; then
        n=${BASH_REMATCH[2]}
        local batch_ms=${BASH_REMATCH[1]}
        [[ $(grep 'measured compute time:' "$log") =~ $compute_re ]] && median=${BASH_REMATCH[1]} ips=${BASH_REMATCH[2]}
        # "run directory DIR" or "run directory DIR: file, file, ..." (the files it holds).
        run_dir=$(sed -n 's/^run directory //; T; s/: [^:]*$//; p; q' "$log")
        layers=$(awk -F, 'NR > 1 { s += $3 + $4 } END { if (NR > 1) printf "%.1f", 1e3 * s }' "$run_dir/profile.csv")
        [[ -n $profiles ]] && cp "$run_dir/profile.csv" "$profiles/yolopipe-$family$m-$p$tag.csv"
        note=": its layers' forward + backward take $layers of the $median ms step; $batch_ms ms per batch with the waits for data"
    else
        failed=1
        note=" $(failure "$log" "yolopipe $family$m $p")"
    fi
    [[ -n $profiles ]] && cat "$log" "$log.err" >"$profiles/yolopipe-$family$m-$p$tag.log"
    printf '%s|yolopipe|%s|%s|%s|%s|%s|||%s|%s\n' "$m" "$p" "$n" "$median" "$ips" "$peak" "$layers" "$note" >>"$rows"
}

run_pytorch() {  # model precision
    local m=$1 p=$2 log=$tmp/pytorch-$1-$2.log out=$tmp/pytorch-$1-$2.csv note='' f=() layers=()
    [[ -n $profiles ]] && layers=(--layers-csv "$profiles/pytorch-$family$m-$p$tag.csv")
    mem_start
    if PYTHONUNBUFFERED=1 "$python" experiments/bench/step_pytorch.py --model "$m" \
        --model-yaml "experiments/models/$family.yaml" --batch "$batch" --imgsz "$imgsz" --precision "$p" \
        --steps "$steps" --warmup "$warmup" --device "$device" --csv "$out" "${layers[@]}" >"$log" 2>"$log.err"; then
        # step_pytorch.py's columns: device model imgsz batch framework precision steps median_ms
        # images_per_s peak_allocated_mib peak_reserved_mib
        IFS=, read -r -a f < <(tail -1 "$out")
    else
        failed=1
        note=" $(failure "$log" "pytorch $family$m $p")"
    fi
    mem_stop
    printf '%s|pytorch|%s|%s|%s|%s|%s|%s|%s||%s\n' "$m" "$p" "${f[6]:-}" "${f[7]:-}" "${f[8]:-}" "$peak" \
        "${f[9]:-}" "${f[10]:-}" "$note" >>"$rows"
}

# yolopipe's and PyTorch's per-layer forward + backward ms side by side (profile.csv rows; PyTorch's
# from its autograd profiler, which slows it: its profiled step is printed beside), slowest first.
# $1 $2: the two CSV files.
layer_table() {
    echo "    per layer, slowest of yolopipe's first (ms forward + backward; PyTorch under its profiler):"
    awk -F, 'FNR == 1 { f++; next }
        f == 1 { yp[$1] = 1e3 * ($3 + $4); name[$1] = $2 }
        f == 2 { pt[$1] = 1e3 * ($3 + $4); step = 1e3 * $7; if (!($1 in name)) name[$1] = $2 }
        END {
            for (l in name) printf "%s %s %.1f %s %s\n", l, name[l], (l in yp) ? yp[l] : -1,
                (l in pt) ? sprintf("%.1f", pt[l]) : "-", ((l in yp) && pt[l] > 0) ? sprintf("%.2f", pt[l] / yp[l]) : "-"
            printf "step - -1 %.1f -\n", step
        }' "$1" "$2" | sort -k3,3nr |
        awk '{ if ($1 == "step") printf "      %-24s %10s %10s\n", "PyTorch step (profiled)", "", $4
               else printf "      %-5s %-18s %10.1f %10s %6s\n", $1, $2, $3, $4, $5 }' |
        { printf '      %-5s %-18s %10s %10s %6s\n' layer module yolopipe pytorch pt/yp; cat; }
}

# Every model and precision on both sides at the current thread count; prints the table, appends the CSV.
measure() {
    # One row per run, fields separated by '|' (not a tab: read would merge empty fields): model framework
    # precision steps median_ms images_per_s peak_gpu_mib torch_allocated_mib torch_reserved_mib layers_ms
    # note. layers_ms (yolopipe): its layers' forward + backward per batch, from the run's profile.csv; the
    # rest of the batch time is the loss, the optimizer, the EMA and any wait for the data loader.
    rows=$tmp/rows
    : >"$rows"
    for m in $models; do
        if ((run_yp)); then for p in $yp_precisions; do run_yolopipe "$m" "$p"; done; fi
        if ((run_pt)); then for p in $precisions; do run_pytorch "$m" "$p"; done; fi
    done

    # The ratio, on each PyTorch row: yolopipe's images/s for the same model and precision (its fp32 when it
    # did not run that precision: tf32 is an fp32 mode) over PyTorch's. Above 1: yolopipe is faster. Both
    # sides run the same batch, so it is PyTorch's median step over yolopipe's (the images/s columns are
    # rounded to 0.1, too coarse for a ratio at a few images/s).
    awk -F'|' -v OFS='|' '
        { row[NR] = $0; m[NR] = $1; fw[NR] = $2; p[NR] = $3; ms[NR] = $5
          if ($2 == "yolopipe" && $5 > 0) yp[$1, $3] = $5 }
        END {
            for (i = 1; i <= NR; i++) {
                ratio = ""
                if (fw[i] == "pytorch" && ms[i] > 0) {
                    ref = ((m[i], p[i]) in yp) ? yp[m[i], p[i]] : (((m[i], "fp32") in yp) ? yp[m[i], "fp32"] : "")
                    if (ref != "") ratio = sprintf("%.2f", ms[i] / ref)
                }
                print row[i], ratio
            }
        }' "$rows" >"$tmp/table"

    echo
    echo "training step (forward + backward + optimizer step) on $device_name, commit $commit"
    table_row() { printf '%-8s %5s %5s  %-9s %-9s %10s %10s %9s %11s %10s %6s\n' "$@"; }
    table_row model imgsz batch framework precision "median ms" "images/s" "peak MiB" "torch alloc" "torch rsvd" "yp/pt"
    while IFS='|' read -r m fw p n median ips peak alloc rsvd layers note ratio; do
        table_row "$family$m" "$imgsz" "$batch" "$fw" "$p" "${median:--}" "${ips:--}" "${peak:--}" "${alloc:--}" \
            "${rsvd:--}" "${ratio:--}"
        if [[ -n $note ]]; then
            echo "    $fw $family$m $p$note"
        elif [[ -n $layers ]]; then
            echo "    $fw $family$m $p: its layers' forward + backward take $layers of the $median ms"
        fi
    done <"$tmp/table"
    echo "peak MiB: the GPU's used memory sampled by nvidia-smi (context and workspaces included) minus what was"
    echo "used before the run; torch alloc/rsvd: torch.cuda.max_memory_allocated/reserved; yp/pt: yolopipe's"
    echo "images/s over PyTorch's (same precision, else yolopipe's fp32). Beside each yolopipe row: its layers'"
    echo "time (profile.csv); the rest of its batch is loss, optimizer, EMA and any wait for the data loader"

    mkdir -p "$(dirname "$csv")"
    if [[ ! -s $csv ]]; then
        echo "date,commit,device,model,imgsz,batch,framework,precision,steps,median_ms,images_per_s,peak_gpu_mib,torch_allocated_mib,torch_reserved_mib,yolopipe_layers_ms,yolopipe_over_pytorch,note" >"$csv"
    fi
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    while IFS='|' read -r m fw p n median ips peak alloc rsvd layers note ratio; do
        printf '%s,%s,"%s",%s%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,"%s"\n' "$date" "$commit" "${device_name//\"/\"\"}" \
            "$family" "$m" "$imgsz" "$batch" "$fw" "$p" "$n" "$median" "$ips" "$peak" "$alloc" "$rsvd" "$layers" "$ratio" \
            "${note//\"/\"\"}"
    done <"$tmp/table" >>"$csv"
    echo "appended to $csv"
    if [[ -n $profiles ]] && ((run_yp && run_pt)); then
        for m in $models; do
            for p in $yp_precisions; do
                local yp_csv=$profiles/yolopipe-$family$m-$p$tag.csv pt_csv=$profiles/pytorch-$family$m-$p$tag.csv
                [[ -f $pt_csv ]] || pt_csv=$profiles/pytorch-$family$m-fp32$tag.csv
                [[ -f $yp_csv && -f $pt_csv ]] || continue
                echo "$family$m $p$tag:"
                layer_table "$yp_csv" "$pt_csv"
            done
        done
    fi
}

((run_yp)) && ensure_data
failed=0
if [[ -z $threads ]]; then
    tag=
    measure
else
    for t in $threads; do
        export OMP_NUM_THREADS=$t
        tag=-t$t
        [[ $device == cpu ]] && device_name="$cpu_name, $t of $cpu_cores threads"
        measure
    done
fi
exit "$failed"

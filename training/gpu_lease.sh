#!/usr/bin/env bash
# The steps of a GPU lease through the `device` tool, so a lease spends its
# minutes training rather than typing (docs/model.md, "The next lease").
#
# Here, once:   training/gpu_lease.sh pack      # .gpu/ data (xz) and .whl/ wheels, both ignored
# Here:         training/gpu_lease.sh slim      # leave every tracked weight file behind...
#               training/gpu_lease.sh unslim    # ...and take them back
# There:        training/gpu_lease.sh setup     # wheels to /tmp/site, data to /tmp/{train,val}.npz
#               training/gpu_lease.sh bench     # bench/gpu_step.py on the card (~1 minute)
#               training/gpu_lease.sh run ARGS  # python -m training.gpu run ... --keep $OUT ARGS
#               training/gpu_lease.sh students ARGS  # more students on run's teachers, while warm
#
# The tool sends at most 64 MiB: the data (56 MB) and the tracked weights
# (54 MB with the kept teachers) do not fit one call. So: `slim`, a first call
# carrying .gpu and .whl that runs `setup` and `bench`; then `unslim` and, in
# the same message (the machine goes back after 30 s idle), a second call
# carrying nothing that runs `run` (/tmp survives between calls).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0)  # what the device image lacks

device_env() {
    export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=torch PYTHONUNBUFFERED=1
}

case "${1:-}" in
pack)
    mkdir -p .gpu .whl
    grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >>.git/info/exclude
    grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >>.git/info/exclude
    python3 - <<'EOF'
import numpy as np
for split in ("train", "val"):  # re-encoded: same sha256 on every machine (gpu-s1/README.md)
    d = np.load(f"../shared/data/fer2013/{split}.npz")
    np.savez(f".gpu/{split}.npz", x=d["x"], y=d["y"])
EOF
    sha256sum .gpu/train.npz .gpu/val.npz
    xz -9e -T0 -f .gpu/train.npz .gpu/val.npz
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    du -ch .gpu/* .whl/* | tail -1
    ;;
slim)  # here only: it edits this checkout's git index
    mapfile -t WEIGHTS < <(git ls-files 'training/runs/*.keras' 'training/runs/*.npz')
    git rm -q --cached "${WEIGHTS[@]}"
    printf '/%s\n' "${WEIGHTS[@]}" >>.git/info/exclude
    ;;
unslim)  # exactly what slim listed in the exclude file, not other staged deletions
    mapfile -t WEIGHTS < <(sed -n 's#^/\(training/runs/.*\.\(keras\|npz\)\)$#\1#p' .git/info/exclude)
    git reset -q -- "${WEIGHTS[@]}"
    for path in "${WEIGHTS[@]}"; do sed -i "\#^/$path\$#d" .git/info/exclude; done
    ;;
setup)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    for split in train val; do xz -dc ".gpu/$split.npz.xz" >"/tmp/$split.npz"; done
    sha256sum /tmp/train.npz /tmp/val.npz
    device_env
    python3 -c "import keras, torch; print(keras.__version__, torch.__version__, torch.cuda.get_device_name())"
    ;;
bench)
    device_env
    python3 bench/gpu_step.py --batch 128 --batch 256 --rounds 3 --bf16
    ;;
run)
    shift
    device_env
    python3 -m training.gpu run --data /tmp/train.npz --val /tmp/val.npz --out /tmp/run \
        --keep "${OUT:?the device tool sets OUT}" "$@"
    ;;
students)
    shift
    device_env
    python3 -m training.gpu students --data /tmp/train.npz --val /tmp/val.npz --out /tmp/run \
        --keep "${OUT:?the device tool sets OUT}" "$@"
    ;;
*)
    awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"
    exit 2
    ;;
esac

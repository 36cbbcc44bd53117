#!/usr/bin/env bash
# The GPU check of issue 19, for a machine with an NVIDIA GPU, a CUDA PyTorch in python3,
# a C++ compiler, and no Node and no internet. Everything else comes in gpu-check-pack/
# (made by `npm run gpu-check:pack` on a development machine). One command, at most
# about 8 minutes:
#
#   bash scripts/gpu-check/run.sh              on the GPU machine (results and log in $OUT)
#   bash scripts/gpu-check/run.sh --dry-run    here: every step on the CPU, against the
#                                              CPU libtorch, at toy sizes
#
# Steps: unpack Node, the modules and dist/ into a work folder; build the addon there
# against python3's torch (linking libtorch_cuda); fastvision doctor; CUDA against the
# CPU (checks.mjs) and the CUDA-only tests; `fastvision train --device cuda` end to end
# on the photo fixture; `predict` on CUDA against the CPU; bench/gpu against PyTorch.
# A step that fails is reported and the next one still runs; the exit code says whether all passed.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PACK=$SRC/gpu-check-pack
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUTDIR=${OUT:-$(mktemp -d)}
W=${FASTVISION_GPU_WORK:-/tmp/fastvision-gpu-check}
mkdir -p "$OUTDIR"
exec > >(tee "$OUTDIR/gpu-check.log") 2>&1
T0=$SECONDS
FAILED=()
PASSED=()
step() { echo; echo "== [$((SECONDS - T0)) s] $*"; }
check() { # name, seconds, command...
  local name=$1 limit=$2
  shift 2
  step "$name"
  "$@" &
  local pid=$!
  ( sleep "$limit"; kill -TERM "$pid" 2>/dev/null; sleep 5; kill -KILL "$pid" 2>/dev/null ) &
  local killer=$!
  wait "$pid"
  local code=$?
  kill "$killer" 2>/dev/null
  wait "$killer" 2>/dev/null
  if [ "$code" = 0 ]; then PASSED+=("$name"); echo "PASS $name"; else FAILED+=("$name"); echo "FAIL $name (exit $code)"; fi
  return "$code"
}

if [ "$DRY" = 1 ]; then
  DEV=cpu AMP=bf16 BENCH=(--device cpu --arch resnet18 --batch 4 --size 64 --steps 2 --warmup 1 --rounds 1 --amp bf16)
else
  DEV=cuda:0 AMP=fp16 BENCH=()
fi
[ -f "$PACK/node.xz" ] || { echo "no $PACK/node.xz: run npm run gpu-check:pack first (and carry gpu-check-pack)"; exit 2; }

PY=""
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import torch' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "no python3 with torch here"; exit 2; }
# xz where it is installed, else Python's lzma and tarfile (a python3 is there anyway).
unxz_to() { if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi; }
untar_xz() { if command -v xz >/dev/null; then tar -xJf "$1" -C "$2"; else "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$1" "$2"; fi; }

step "unpack into $W"
rm -rf "$W"
mkdir -p "$W/bin" "$W/tree/build/Release"
unxz_to "$PACK/node.xz" "$W/bin/node" && chmod +x "$W/bin/node"
export PATH="$W/bin:$PATH"
for d in native scripts bench test package.json binding.gyp; do cp -r "$SRC/$d" "$W/tree/"; done
untar_xz "$PACK/node_modules.tar.xz" "$W/tree"
untar_xz "$PACK/dist.tar.xz" "$W/tree"
cp "$PACK/prebuilt/fastvision_image.node" "$W/tree/build/Release/"
# libjpeg as the image addon was built against, for machines without it.
export LD_LIBRARY_PATH="$PACK/prebuilt/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd "$W/tree" || exit 2
echo "node $(node --version); $(g++ --version | head -1)"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
export FASTVISION_BENCH_PYTHON=$PY
export FASTVISION_HOME="$W/home"

build() {
  local abi include ldflags defines distinc distdefs napi
  abi=$("$PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  include=$(node scripts/find-libtorch.mjs include) || return 1
  ldflags=$(node scripts/find-libtorch.mjs ldflags) || return 1
  defines=$(node scripts/find-libtorch.mjs defines)
  distinc=$(node scripts/find-libtorch.mjs dist-include)
  distdefs=$(node scripts/find-libtorch.mjs dist-defines)
  node scripts/find-libtorch.mjs json
  napi="-I$PACK/node-include -I$(node -p "require('node-addon-api').include_dir")"
  local cxx=(g++ -std=c++17 -O2 -fPIC -shared -fexceptions -frtti "-D_GLIBCXX_USE_CXX11_ABI=$abi" -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS -Wno-deprecated-declarations -Wno-unused-parameter)
  local d defs=() ddefs=() inc=() dinc=()
  for d in $defines; do defs+=("-D$d"); done
  for d in $distdefs; do ddefs+=("-D$d"); done
  for d in $include; do inc+=("-I$d"); done
  for d in $distinc; do dinc+=("-I$d"); done
  echo "defines: ${defs[*]:-none}; distributed: ${ddefs[*]:-none}"
  # shellcheck disable=SC2086
  "${cxx[@]}" "${defs[@]}" $napi "${inc[@]}" native/addon.cc -o build/Release/fastvision.node $ldflags -ltorch -ltorch_cpu -lc10 &
  local a=$!
  # shellcheck disable=SC2086
  "${cxx[@]}" "${ddefs[@]}" -DUSE_C10D_GLOO $napi -Inative/stubs "${dinc[@]}" native/dist.cc -o build/Release/fastvision_dist.node $ldflags -ltorch -ltorch_cpu -lc10 &
  local b=$!
  wait "$a" || return 1
  wait "$b" || echo "note: the distributed addon did not build (NCCL and Gloo stay untested here)"
  ls -la build/Release
}
check "build the addon against $PY's torch" 300 build || { echo "cannot go on without the addon"; exit 1; }
check "fastvision doctor" 60 node dist/src/cli/bin.js doctor
check "CUDA against the CPU, autocast against float32 (checks.mjs)" 180 node scripts/gpu-check/checks.mjs --device "$DEV" --amp "$AMP"
check "CUDA-only tests (device, mixed precision)" 300 node --test --test-concurrency=1 dist/test/device.test.js dist/test/mixed-precision.test.js
PHOTOS=$W/tree/test/fixtures/photos/dogscats
check "fastvision train --device $DEV --mixed-precision $AMP" 300 node dist/src/cli/bin.js train "$PHOTOS" --device "$DEV" --mixed-precision "$AMP" --size 64 --bs 8 --freeze-epochs 1 --epochs 1 --tta-aug 2 --out "$W/run" --json "$OUTDIR/train.json"
predict_same() {
  node dist/src/cli/bin.js predict "$W/run" "$PHOTOS/valid" --json --top 2 --device "$DEV" > "$W/predict-dev.json" || return 1
  node dist/src/cli/bin.js predict "$W/run" "$PHOTOS/valid" --json --top 2 --device cpu > "$W/predict-cpu.json" || return 1
  node -e '
    const [a, b] = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8")));
    if (a.length === 0 || a.length !== b.length) { console.log(`FAIL: ${a.length} and ${b.length} predictions`); process.exit(1); }
    const cpu = new Map(b.map((r) => [r.file, new Map(r.top.map((t) => [t.label, t.p]))]));
    let worst = 0, same = 0;
    for (const r of a) {
      const other = cpu.get(r.file);
      if (other === undefined) { console.log(`FAIL: ${r.file} missing on the CPU`); process.exit(1); }
      if (other.has(r.top[0].label) && [...other.entries()].sort((x, y) => y[1] - x[1])[0][0] === r.top[0].label) same++;
      for (const t of r.top) if (other.has(t.label)) worst = Math.max(worst, Math.abs(t.p - other.get(t.label)));
    }
    console.log(`${a.length} images: the same top class for ${same}; largest difference of a probability ${worst.toExponential(2)}`);
    process.exit(same === a.length && worst < 1e-2 ? 0 : 1);
  ' "$W/predict-dev.json" "$W/predict-cpu.json"
}
check "predict on $DEV equals the CPU" 180 predict_same
check "bench/gpu: ResNet-50 training step against PyTorch eager" 300 bash -c 'node dist/bench/gpu.js "$@" | tee "'"$OUTDIR"'/bench-gpu.txt"' _ "${BENCH[@]}"

step "summary after $((SECONDS - T0)) s"
for p in "${PASSED[@]}"; do echo "PASS $p"; done
for f in "${FAILED[@]}"; do echo "FAIL $f"; done
[ "${#FAILED[@]}" = 0 ]

#!/usr/bin/env bash
# GPU check of Tachyon on the testbed target, for a machine with an NVIDIA GPU.
# Run from anywhere after `npm ci` (no network needed):   bench/gpu-check.sh
# Prints: the devices llama.cpp finds with the CUDA build; prefill/decode tokens/s with CUDA
# (Tachyon and node-llama-cpp on the same binaries); the greedy agreement of CUDA with the CPU
# backend (10 prompts of bench/prompts/reasoning.jsonl, 128 tokens each, token ids compared).
# `bench/gpu-check.sh cpu` runs the same steps on the CPU backend (a dry run for machines without a GPU).
# GPU_CHECK_THREADS=N sets the CPU threads (default: all cores).
# GPU_CHECK_CPU_RATIO=1 also measures the CPU decode ratio vs node-llama-cpp on this (quiet, many-core)
# machine: testbed target and a generated qwen2.5-0.5b q8_0 model (about 2 more minutes, 0.5 GB disk).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

backend="${1:-cuda}"
model=models/testbed/target.gguf
threads=()
[ -n "${GPU_CHECK_THREADS:-}" ] && threads=(--threads "$GPU_CHECK_THREADS")
fail() {
  echo "gpu-check: FAILED: $*" >&2
  exit 1
}

echo "== GPU =="
if [ "$backend" = cuda ]; then
  command -v nvidia-smi >/dev/null 2>&1 || fail "no NVIDIA GPU on this machine (nvidia-smi not found)"
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader ||
    fail "no usable NVIDIA GPU on this machine (nvidia-smi failed)"
else
  echo "(backend $backend: no GPU required)"
fi

[ -f dist/src/cli/main.js ] || npx tsc -p tsconfig.json || fail "cannot build dist/ (npx tsc -p tsconfig.json)"
[ -f "$model" ] || fail "$model is missing"

echo
echo "== devices found by llama.cpp (--gpu $backend) =="
node --input-type=module -e "
import { loadLlamaLibrary } from './dist/src/llama/library.js';
try {
  const library = loadLlamaLibrary(process.argv[1]);
  console.log('backend ' + library.backend + ' from ' + library.binDir);
  console.log('devices: ' + library.devices.join(', '));
} catch (error) {
  console.error('gpu-check: FAILED: ' + error.message);
  process.exit(1);
}" "$backend" || exit 1

echo
echo "== prefill / decode tokens/s on $model (--gpu $backend) =="
node bin/tachyon.js bench decode --model "$model" --gpu "$backend" "${threads[@]}" --runs 3 --prompt-tokens 128 --tokens 256 --timeout 90 ||
  fail "bench decode --gpu $backend"

echo
echo "== greedy agreement: $backend vs cpu =="
node bin/tachyon.js bench agreement --model "$model" --gpu "$backend" --reference cpu "${threads[@]}" \
  --prompts bench/prompts/reasoning.jsonl --count 10 --tokens 128 --timeout 240 ||
  fail "bench agreement --gpu $backend"

if [ "${GPU_CHECK_CPU_RATIO:-0}" = 1 ]; then
  echo
  echo "== CPU decode ratio vs node-llama-cpp: testbed target =="
  node bin/tachyon.js bench decode --model "$model" --gpu cpu "${threads[@]}" --runs 5 --timeout 120 || fail "bench decode --gpu cpu"
  echo
  echo "== CPU decode ratio vs node-llama-cpp: qwen2.5-0.5b q8_0 (random weights) =="
  qwen=.cache/models/qwen2.5-0.5b-q8_0.gguf
  [ -f "$qwen" ] || node bin/tachyon.js make-model --preset qwen2.5-0.5b --quant q8_0 --out "$qwen" || fail "make-model"
  node bin/tachyon.js bench decode --model "$qwen" --gpu cpu "${threads[@]}" --runs 5 --tokens 128 --timeout 180 || fail "bench decode --gpu cpu (qwen)"
fi

echo
echo "gpu-check: done"

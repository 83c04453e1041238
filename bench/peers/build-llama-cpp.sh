#!/usr/bin/env bash
# Build llama.cpp's own llama-server (CPU only, Release) from the source that ships inside
# node-llama-cpp (node_modules/node-llama-cpp/llama/gitRelease.bundle), once, into
#   .cache/llama.cpp/<commit>/{src,build}
# Prints the path of the llama-server binary on its last stdout line.
#
# Usage: bench/peers/build-llama-cpp.sh [--jobs N] [--force]
# Env:   TACHYON_LLAMA_BUNDLE (override the bundle), TACHYON_LLAMA_CACHE (override .cache/llama.cpp)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUNDLE="${TACHYON_LLAMA_BUNDLE:-$ROOT/node_modules/node-llama-cpp/llama/gitRelease.bundle}"
CACHE="${TACHYON_LLAMA_CACHE:-$ROOT/.cache/llama.cpp}"
JOBS=2
FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs|-j) JOBS="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { echo "[build-llama-cpp] $*" >&2; }

[ -f "$BUNDLE" ] || { log "bundle not found: $BUNDLE (run npm install?)"; exit 1; }
command -v git >/dev/null   || { log "git is required to unpack the bundle"; exit 1; }
command -v cmake >/dev/null || { log "cmake is required"; exit 1; }

# Key the folder by the bundle's commit (short hash).
FULL="$(git bundle list-heads "$BUNDLE" | awk '$2=="HEAD"{print $1; exit}')"
[ -n "$FULL" ] || FULL="$(git bundle list-heads "$BUNDLE" | awk '{print $1; exit}')"
COMMIT="${FULL:0:7}"
DIR="$CACHE/$COMMIT"
SRC="$DIR/src"
BUILD="$DIR/build"
BIN="$BUILD/bin/llama-server"

if [ -x "$BIN" ] && [ "$FORCE" = 0 ]; then
  log "already built: $BIN (commit $COMMIT); use --force to rebuild"
  echo "$BIN"
  exit 0
fi

T0=$(date +%s)
mkdir -p "$DIR"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  log "cloning $BUNDLE -> $SRC"
  rm -rf "$SRC"
  git -c advice.detachedHead=false clone -q "$BUNDLE" "$SRC"
fi
log "source at commit $(git -C "$SRC" rev-parse --short HEAD)"

# CPU only, Release, no network at configure/build time:
#   - no HTTPS (LLAMA_OPENSSL=OFF); LLAMA_CURL is deprecated/ignored in this version but harmless
#   - no web UI (neither npm build nor the prebuilt download from Hugging Face)
#   - static libraries so the binary is self-contained
log "configuring (cmake) in $BUILD"
cmake -S "$SRC" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON \
  -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_OPENMP=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  >"$DIR/configure.log" 2>&1 || { log "cmake configure failed, see $DIR/configure.log"; tail -30 "$DIR/configure.log" >&2; exit 1; }
T1=$(date +%s)
log "configured in $((T1 - T0)) s; building llama-server with -j$JOBS (progress below)"

# cmake's Makefile generator prints "[ NN%] Building ..." lines: that is the progress.
cmake --build "$BUILD" --config Release -j"$JOBS" --target llama-server 2>&1 | tee "$DIR/build.log" \
  | grep --line-buffered -E '^\[ *[0-9]+%\]|error|Error' >&2 || true
if [ ! -x "$BIN" ]; then
  log "build failed, see $DIR/build.log"
  tail -40 "$DIR/build.log" >&2
  exit 1
fi
T2=$(date +%s)
log "built $BIN in $((T2 - T0)) s total (configure $((T1 - T0)) s, compile $((T2 - T1)) s)"
printf '{"commit":"%s","seconds_total":%d,"seconds_configure":%d,"seconds_compile":%d,"jobs":%s,"built_at":"%s"}\n' \
  "$FULL" $((T2 - T0)) $((T1 - T0)) $((T2 - T1)) "$JOBS" "$(date -u +%FT%TZ)" >"$DIR/build-info.json"
echo "$BIN"

#!/usr/bin/env bash
# The plugin SDK end to end, as a user outside the tree meets it (ctest "plugin SDK: ..."; tests/CMakeLists.txt):
#   1. cmake --install the build tree into a temporary prefix;
#   2. build examples/plugin-skeletons/quantizer out of tree against it (find_package(VidKV), vidkv_add_plugin);
#   3. an experiment that lists the library under `plugins:` is refused without --allow-plugins (exit 1, message
#      naming the flag), then runs with it: a sweep over the skeleton's bits on the bundled trace, results.csv with
#      one row per run and layer;
#   4. `vidkv plugins check` on the library passes (exit 0, no FAIL).
# Usage: out_of_tree_plugin.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$src/examples/plugin-skeletons/quantizer" -B "$work/plugin" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/plugin" >/dev/null
lib="$work/plugin/libskeleton_absmax.so"
test -f "$lib"

cd "$work"
cat > exp.yaml <<YAML
name: skeleton
traces: [$src/traces/data/smollm2-135m-longdoc.h5]
plugins: [plugin/libskeleton_absmax.so]
codec:
  key: {type: skeleton_absmax, bits: 4}
  value: {type: skeleton_absmax, bits: 4}
lifecycle: {type: paper, group: 32, residual: 128}
sweep:
  codec.key.bits: [2, 8]
metrics: [key_rel_error, value_rel_error, effective_bits]
YAML

set +e
"$prefix/bin/vidkv" run exp.yaml --quiet >refused.txt 2>&1
status=$?
set -e
if [ "$status" -ne 1 ] || ! grep -q "refused without --allow-plugins" refused.txt; then
  echo "expected the experiment's plugin to be refused without --allow-plugins (exit 1); got exit $status:"
  cat refused.txt
  exit 1
fi

"$prefix/bin/vidkv" run exp.yaml --allow-plugins --quiet --out results
rows=$(($(wc -l <results/results.csv) - 1))
echo "results.csv: $rows rows"
test "$rows" -ge 2
grep -q "skeleton_absmax" results/config.yaml

"$prefix/bin/vidkv" plugins check "$lib" | tee check.txt
! grep -q "FAIL" check.txt
echo "plugin SDK: install, out-of-tree build, YAML load, sweep and conformance check passed"

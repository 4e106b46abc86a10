#!/usr/bin/env bash
# The quantizer skeleton as a user outside the tree meets it, against an INSTALLED VidKV (a `cmake --install`
# prefix: out_of_tree_plugin.sh; or the package folder of a pip-installed VidKV: pip_install.sh):
#   1. build examples/plugin-skeletons/quantizer out of tree with -DCMAKE_PREFIX_PATH=PREFIX (find_package(VidKV),
#      vidkv_add_plugin());
#   2. an experiment that lists the library under `plugins:` is refused without --allow-plugins (exit 1, message
#      naming the flag), then runs with it: a sweep over the skeleton's key bits (2, 8) on the bundled trace,
#      results.csv with a row per run and layer, the plugin named in the results' config.yaml;
#   3. `vidkv plugins check` on the library passes (exit 0, no FAIL).
# Usage: skeleton_sweep.sh PREFIX VIDKV SOURCE_DIR WORK_DIR
#   PREFIX: the folder holding lib/cmake/VidKV; VIDKV: the installed command; SOURCE_DIR: the VidKV sources (for
#   the skeleton and the bundled trace only); WORK_DIR: an empty scratch folder (the caller removes it).
set -euo pipefail
prefix=$(cd "$1" && pwd)
vidkv=$2
src=$(cd "$3" && pwd)
work=$(cd "$4" && pwd)

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
"$vidkv" run exp.yaml --quiet >refused.txt 2>&1
status=$?
set -e
if [ "$status" -ne 1 ] || ! grep -q "refused without --allow-plugins" refused.txt; then
  echo "expected the experiment's plugin to be refused without --allow-plugins (exit 1); got exit $status:"
  cat refused.txt
  exit 1
fi

"$vidkv" run exp.yaml --allow-plugins --quiet --out results
rows=$(($(wc -l <results/results.csv) - 1))
echo "results.csv: $rows rows"
test "$rows" -ge 2
grep -q "skeleton_absmax" results/config.yaml

"$vidkv" plugins check "$lib" | tee check.txt
! grep -q "FAIL" check.txt

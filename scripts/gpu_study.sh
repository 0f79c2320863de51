#!/usr/bin/env bash
# The Atari learner stages (abstract, natural, probe, report) of the `gpu` config on one GPU
# machine that has JAX but neither Ray nor Reverb nor MuJoCo (issue 33): they run in this one
# process (`--config.ray.address=none`, rmr_dist/stages/atari_in_process.py) and read the
# episode store of a work directory collected elsewhere.
#
#   On a CPU machine with the full stack:
#     python atari.py --config=configs/atari.py:gpu --workdir=.gpu/work --stages=collect
#   Then, on the GPU machine (the repo copied there, .gpu/work with it):
#     bash scripts/gpu_study.sh .gpu/work OUT_DIR [--config.key=value ...]
#
# Python packages the GPU machine lacks (ml_collections, tensorboardX, ...) can travel as wheels
# in .whl/ (installed into a private directory, nothing else is touched). OUT_DIR receives
# Table 1, Table 2 and its curve, results.json, timings.json (seconds per update of every unit)
# and the run's log. Extra arguments override the config, e.g. a smaller budget.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 WORKDIR OUT_DIR [--config.key=value ...]" >&2
  exit 2
fi
workdir=$1
out=$2
shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
if compgen -G "$repo/.whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
    "$repo"/.whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
start=$(date +%s)
set +e
"$python" -u "$repo/atari.py" --config="$repo/configs/atari.py:gpu" --workdir="$workdir" \
  --config.ray.address=none --stages=abstract,natural,probe,report "$@" 2>&1 | tee "$out/run.log"
status=${PIPESTATUS[0]}
set -e
echo "gpu_study: learner stages exited with $status after $(( $(date +%s) - start )) s" \
  | tee -a "$out/run.log"
"$python" - "$workdir" "$out" <<'PY'
"""Copies the report's tables and writes timings.json: seconds per update of every unit."""
import glob, json, os, shutil, sys
workdir, out = sys.argv[1:]
for name in ('table1.md', 'table2.md', 'table2_curve.md', 'results.json'):
  path = os.path.join(workdir, 'report', name)
  if os.path.exists(path):
    shutil.copy(path, os.path.join(out, name))
# This run's stage fingerprints (the report records them), so older units of other settings
# in the same work directory are left out.
results_path = os.path.join(workdir, 'report', 'results.json')
stage = {}
if os.path.exists(results_path):
  for fingerprints in json.load(open(results_path)).get('fingerprints', {}).values():
    stage.update(fingerprints)
timings = []
for path in sorted(glob.glob(os.path.join(workdir, 'abstract', stage.get('abstract', '*'), '*',
                                          '*', 'result.json'))):
  r = json.load(open(path))
  if r.get('train_steps'):
    timings.append({'unit': f'abstract {r["game"]}/{r["model"]}', 'updates': r['train_steps'],
                    'seconds': r['train_seconds'],
                    'seconds_per_update': r['train_seconds'] / r['train_steps']})
for path in sorted(glob.glob(os.path.join(workdir, 'natural', stage.get('natural', '*'), '*',
                                          '*', 'trained.json'))):
  r = json.load(open(path))
  timings.append({'unit': f'natural {r["game"]} fraction {r["fraction"]}', 'updates': r['steps'],
                  'seconds': r['seconds'], 'seconds_per_update': r['seconds'] / r['steps']})
json.dump(timings, open(os.path.join(out, 'timings.json'), 'w'), indent=1)
for t in timings:
  print(f'gpu_study: {t["unit"]}: {t["updates"]} updates, {t["seconds_per_update"]:.4f} s each')
PY
exit "$status"

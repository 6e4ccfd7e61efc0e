#!/bin/bash
# W&B vs none, SMALL settings, 1 step, alone on the machine
cd "$(dirname "$0")/../.."
mkdir -p "${OUT:-/tmp/wandb_profiler}"
for t in none wandb; do
  rm -rf ${OUT:-/tmp/wandb_profiler}/$t
  /usr/bin/time -f "$t wall %e s maxrss %M KiB" .venv/bin/python -m bench tracking=$t train.max_steps=1 train.batch_size=8 task.train_size=64 task.val_size=16 task.test_size=32 train.latency_samples=2 train.eval_every=0 results_dir=${OUT:-/tmp/wandb_profiler}/$t > ${OUT:-/tmp/wandb_profiler}/$t.out 2>&1
  tail -1 ${OUT:-/tmp/wandb_profiler}/$t.out
  .venv/bin/python - "$t" "${OUT:-/tmp/wandb_profiler}" <<'PY'
import json, glob, sys
t = sys.argv[1]
[p] = [p for p in glob.glob(f"{sys.argv[2]}/{t}/default/*.json")]
r = json.load(open(p))
s = r["time"]["stages"]
print(t, "record wall", round(s["wall_seconds"], 1), "stages", {k: round(v, 1) for k, v in s["seconds"].items()},
      "process peak MiB", round(r["memory"].get("process_peak_rss_bytes", 0) / 2**20), "tensor peak MiB", round(r["memory"]["peak_bytes"] / 2**20, 1),
      "shared", r["time"].get("shared_machine"))
PY
done

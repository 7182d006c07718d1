#!/usr/bin/env bash
# Prints the medians of the last `cargo bench -p benches --bench codec` run as a Markdown
# table: median time per operation (with criterion's 95% interval), throughput at the
# median, and the speed ratio to the crates.io `diameter` crate in the same group and run
# (its median divided by the row's: above 1 means faster than `diameter`).
#
#   benches/report.sh [CRITERION_DIR]    (default: ${CARGO_TARGET_DIR:-target}/criterion)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-${CARGO_TARGET_DIR:-target}/criterion}
peer=diameter-0.7.1

printf '| benchmark | median ns/op [95%% CI] | MiB/s at median | ratio to %s |\n' "$peer"
printf '|---|---|---|---|\n'
# Ours first, then the peers, in the order the bench binary runs them.
rows=(
  decode_ccr-update/walk decode_ccr-update/walk-avps decode_ccr-update/typed
  decode_ccr-update/diameter-0.7.1 decode_ccr-update/sawp-diameter-0.13.1
  encode_cca-update/typed encode_cca-update/typed-build
  encode_cca-update/diameter-0.7.1 encode_cca-update/diameter-0.7.1-build
)
for row in "${rows[@]}"; do
  group=${row%%/*}
  peer_median=$(jq '.median.point_estimate' "$dir/$group/$peer/new/estimates.json")
  bench="$dir/$row/new"
  jq -r --argjson peer "$peer_median" --slurpfile meta "$bench/benchmark.json" '
      .median as $m
      | ($meta[0].throughput.Bytes) as $bytes
      | "| \($meta[0].full_id) | \($m.point_estimate * 10 | round / 10) "
        + "[\($m.confidence_interval.lower_bound * 10 | round / 10), "
        + "\($m.confidence_interval.upper_bound * 10 | round / 10)] "
        + "| \($bytes / $m.point_estimate * 1e9 / 1048576 | round) "
        + "| \($peer / $m.point_estimate * 100 | round / 100) |"
  ' "$bench/estimates.json"
done

#!/usr/bin/env bash
# The end-to-end knee (DESIGN.md section 7, issue 6): the real loadgen drives the real
# gateway and pdf (both spawned by it on loopback; all three processes on this machine)
# at stepped rates of ACR -> CCR -> CCA -> ACA transactions per second, finds the knee (the
# highest offered rate that is achieved within 5%, with no failed request and a steady-state
# p99 from the intended send time under P99_BOUND_MS: second WARMUP_SECONDS to the last
# full second, the warm-up left out), then runs at half the knee for longer and records its latency.
# Prints a Markdown table; each run's report stays in OUT.
#
#   benches/knee.sh [RATE ...]      default rates: 20000 40000 60000 80000 100000 110000 120000 130000 140000 150000 160000
#
# Environment: STEP_SECONDS (15) per rate, HALF_SECONDS (60: its p99 is that of 3 M answers, so one
# bad second moves it less than in 20 s) for the run at half the knee,
# P99_BOUND_MS (10), WARMUP_SECONDS (7: the steady state starts there), OUT (target/knee), BIN (${CARGO_TARGET_DIR:-target}/release),
# GATEWAY_WORKERS and PDF_WORKERS (topology.gateway_workers / pdf_workers; default: one
# worker per core), NO_BUILD=1 to skip `cargo build --release`. Not part of any test run.
#
# How the load is shaped: a closed model of N voice sessions whose INTERIMs come every
# 0.2 s (interval "2s" at time_scale 10) and which last far longer than the run, so the
# offered rate is 5 N ACR/s, nearly all INTERIMs (CCR-U with a debit on the pdf, memory
# journal). The population's balances are large, so no session runs out of money.
set -euo pipefail
cd "$(dirname "$0")/.."
STEP_SECONDS=${STEP_SECONDS:-15}
HALF_SECONDS=${HALF_SECONDS:-60}
P99_BOUND_MS=${P99_BOUND_MS:-10}
WARMUP_SECONDS=${WARMUP_SECONDS:-7}
OUT=${OUT:-target/knee}
GATEWAY_WORKERS=${GATEWAY_WORKERS-}
PDF_WORKERS=${PDF_WORKERS-}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(20000 40000 60000 80000 100000 110000 120000 130000 140000 150000 160000)

if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --release -p pdf -p gateway -p loadgen >&2
fi
mkdir -p "$OUT"

# scenario NAME RATE SECONDS: writes OUT/NAME.toml
scenario() {
  local name=$1 rate=$2 seconds=$3
  local sessions=$((rate / 5))
  cat > "$OUT/$name.toml" <<EOF
# benches/knee.sh: $rate ACR/s offered ($sessions sessions, an INTERIM every 0.2 s each)
schema = 1
name = "$name"
seed = 1
duration = "${seconds}s"
time_scale = 10.0

[topology]
spawn = true
pdf_connections = 4
access_connections = 4
$([ -z "$GATEWAY_WORKERS" ] || echo "gateway_workers = $GATEWAY_WORKERS")
$([ -z "$PDF_WORKERS" ] || echo "pdf_workers = $PDF_WORKERS")

[population]
subscribers = $((sessions * 2 > 10000 ? sessions * 2 : 10000))
balance = { dist = "constant", value = 1000000000000 }
shared_share = 0.0

[[mix]]
name = "voice"
kind = "voice"
weight = 1
duration = { dist = "constant", value = "10h" }
interval = "2s"

[load]
concurrent_sessions = $sessions
ramp = "2s"
EOF
}

# measure NAME RATE SECONDS: one line of figures. Latency of the steady state: the
# INTERIM histograms of the interval log from second WARMUP_SECONDS to the last full
# second, added up (`loadgen latency`). The warm-up: the 2 s ramp and the sessions' first
# requests. (Until a30af63 also the seconds while the pdf's duplicate cache filled, each
# page of it a page fault: p99s several times higher until it was full; the whole run's
# p99 now comes out close to the steady one: see BENCHMARKS.md.) The whole run's p99,
# warm-up included, is shown beside it.
measure() {
  "$BIN/loadgen" latency "$OUT/$1/latency.hlog" --from "$WARMUP_SECONDS" --to $(($3 - 1)) --json > "$OUT/$1/steady.json"
  python3 - "$OUT/$1/summary.json" "$2" "$P99_BOUND_MS" "$OUT/$1/steady.json" "$OUT/$1.cpu" <<'EOF'
import json, os, sys
report = json.load(open(sys.argv[1]))
offered, bound_ms = float(sys.argv[2]), float(sys.argv[3])
steady = {r["tag"]: r for r in json.load(open(sys.argv[4]))}
rows = report["timeline"][3:-1]
achieved = sum(r["answered"] for r in rows) / max(len(rows), 1)
step = next(s for s in report["steps"] if s["step"] == "INTERIM")
sched, serv = steady["INTERIM.scheduled"], steady["INTERIM.service"]
worst_second_p99 = max((r["p99_us"] for r in rows), default=0)
failed = report["failed_requests"]
behind = report["loadgen_behind_us"][0]
# CPU per transaction: the whole run's CPU time (start-up and books check included) over
# every answer of the run.
cpu = "-"
if os.path.exists(sys.argv[5]):
    for line in open(sys.argv[5]):
        fields = line.strip().split(",")
        if len(fields) > 2 and fields[2] == "task-clock":
            answers = sum(r["answered"] for r in report["timeline"])
            cpu = f"{float(fields[0]) * 1000 / max(answers, 1):.1f}"
ok = achieved >= 0.95 * offered and failed == 0 and sched["p99_us"] <= bound_ms * 1000
ms = lambda us: f"{us / 1000:.2f}"
print(" | ".join([
    f"{offered:,.0f}", f"{achieved:,.0f}", ms(sched["p50_us"]), ms(sched["p99_us"]),
    ms(sched["p999_us"]), ms(serv["p99_us"]), ms(step["scheduled_us"]["p99"]),
    ms(worst_second_p99), ms(behind), cpu, str(failed),
    report["books"].get("mismatches", "-") == 0 and "ok" or "MISMATCH",
    "yes" if ok else "no",
]))
sys.exit(0 if ok else 1)
EOF
}

run() {
  local name=$1 rate=$2 seconds=$3
  scenario "$name" "$rate" "$seconds"
  # Under `perf stat` when there is one: the CPU time of all three processes (the loadgen
  # and its children), for the CPU per transaction column.
  local perf=()
  if command -v perf > /dev/null && perf stat -e task-clock true > /dev/null 2>&1; then
    perf=(perf stat -x, -e task-clock -o "$OUT/$name.cpu")
  fi
  rm -f "$OUT/$name.cpu"
  "${perf[@]}" "$BIN/loadgen" run "$OUT/$name.toml" --out "$OUT/$name" > "$OUT/$name.stdout" 2> "$OUT/$name.stderr" || true
  [ -f "$OUT/$name/summary.json" ] || { echo "| $rate | run failed: see $OUT/$name.stderr |"; return 2; }
  local figures
  if figures=$(measure "$name" "$rate" "$seconds"); then
    echo "| $figures |"
  else
    echo "| $figures |"
    return 1
  fi
}

header='| offered ACR/s | achieved ACR/s | steady INTERIM p50 ms | p99 ms | p99.9 ms | service p99 ms | whole run p99 ms (ramp included) | worst second p99 ms | loadgen behind p99 ms | CPU us/tx (all three) | failed | books | within bounds |'
rule='|---|---|---|---|---|---|---|---|---|---|---|---|---|'
echo "machine: $(nproc) cores; $(uptime | sed 's/^ *//')"
# The machine's own noise, idle, before the first run: late wake-ups here are in every
# latency tail below and none of ours (benches/jitter.py).
echo "idle machine: $(python3 benches/jitter.py 5)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- loadgen gateway pdf protocol || echo ' (with local changes)')"
echo
echo "$header"
echo "$rule"
knee=0
misses=0
for rate in "${rates[@]}"; do
  if line=$(run "knee-$rate" "$rate" "$STEP_SECONDS"); then
    knee=$rate
    misses=0
  else
    misses=$((misses + 1))
  fi
  echo "$line"
  # Two rates in a row beyond the bounds: the knee is behind us.
  [ $misses -lt 2 ] || break
done
echo
if [ "$knee" = 0 ]; then
  echo "no rate stayed within bounds"
  exit 1
fi
half=$((knee / 2))
echo "knee: $knee ACR/s; at half the knee ($half ACR/s, ${HALF_SECONDS} s):"
echo
echo "$header"
echo "$rule"
run "half-$half" "$half" "$HALF_SECONDS" || true
echo "$(uptime | sed 's/^ *//')"
echo "idle machine: $(python3 benches/jitter.py 5)"

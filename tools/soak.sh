#!/usr/bin/env bash
# The soak run (issue 16, run once by hand, never in CI): the scaled referendum at a steady
# rate for an hour (ingest, validate and aggregate on PostgreSQL + RabbitMQ + Redis) with an
# election's jobs beside it (api and worker, `demo --server` one election after another, a
# pause of ELECTION_PAUSE seconds, default 60, between them).
#
# Prints, and keeps under OUT: the load generator's line per minute (answers, p50/p95/p99),
# every process's resident memory per minute (rss.csv), each election's outcome, and the
# reconciliation at the end. Exits non-zero if any role died, an election failed, or the
# referendum did not reconcile exactly.
#
#   tools/soak.sh [SECONDS] [VOTES_PER_SECOND]      (defaults: 3600 and 1000)
#
# Needs the release build (cargo build --release) and the machine's PostgreSQL (127.0.0.1:5432,
# trust), RabbitMQ (guest) and Redis; it uses its own database, virtual host and key prefix.
set -euo pipefail

seconds=${1:-3600}
rate=${2:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${AMARVOTE_BIN:-$root/target/release/amarvote}
run=soak$(date +%s)
out=${OUT:-$root/target/$run}
mkdir -p "$out"
[ -x "$bin" ] || { echo "soak: build first: cargo build --release" >&2; exit 2; }

psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $run" >/dev/null
rabbitmqctl -q add_vhost "$run" >/dev/null
rabbitmqctl -q set_permissions -p "$run" guest '.*' '.*' '.*' >/dev/null
openssl rand -hex 32 > "$out/referendum.secret"
chmod 600 "$out/referendum.secret"

export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$run"
export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$run"
export REDIS_URL="redis://127.0.0.1:6379"
export AMARVOTE_SERVER_KEY=$(openssl rand -hex 32)
export AMARVOTE_ADMIN_TOKEN=$(openssl rand -hex 24)
export AMARVOTE_REFERENDUM_SECRET_FILE=$out/referendum.secret
export AMARVOTE_VOTE_RATE_LIMIT=1000000
export AMARVOTE_BALLOT_RATE_LIMIT=1000000
export RUST_LOG=warn

declare -A pids
start_role() {
    local name=$1; shift
    "$bin" "$@" >"$out/$name.log" 2>&1 &
    pids[$name]=$!
}
start_role api api --listen 127.0.0.1:18080
start_role worker worker --listen 127.0.0.1:18100
start_role ingest referendum ingest --listen 127.0.0.1:18081 --prefix "$run:"
start_role validate referendum validate --listen 127.0.0.1:18101 --prefix "$run:"
start_role aggregate referendum aggregate --listen 127.0.0.1:18102 --prefix "$run:"

stop_elections() {
    [ -n "${elections:-}" ] || return 0
    kill "$elections" 2>/dev/null || true
    pkill -P "$elections" 2>/dev/null || true
    wait "$elections" 2>/dev/null || true
    elections=
}

# The run's database, virtual host and Redis keys go with it; its figures stay in OUT.
clean_up() {
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $run" >/dev/null 2>&1 || true
    rabbitmqctl -q delete_vhost "$run" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$run:*" | xargs -r -n 1000 redis-cli del >/dev/null 2>&1 || true
}

stop_all() {
    stop_elections
    kill "${pids[@]}" 2>/dev/null || true
    [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null || true
    wait 2>/dev/null || true
    clean_up
}
trap stop_all EXIT

for port in 18080 18081 18100 18101 18102; do
    for _ in $(seq 120); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
        sleep 0.5
    done
    curl -sf "http://127.0.0.1:$port/health" >/dev/null \
        || { echo "soak: the role on port $port never became healthy (logs in $out)" >&2; exit 1; }
done

# Resident memory (MiB) of every role and service, once a minute.
sample_memory() {
    local names=(api worker ingest validate aggregate)
    echo "minute,${names[*]// /,},redis,rabbitmq,postgres" | tr ' ' ',' > "$out/rss.csv"
    local minute=0
    while true; do
        local line=$minute
        for name in "${names[@]}"; do
            line+=,$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/${pids[$name]}/status" 2>/dev/null || echo dead)
        done
        for program in redis-server beam.smp postgres; do
            line+=,$(ps -C "$program" -o rss= | awk '{s+=$1} END {printf "%.1f", s/1024}')
        done
        echo "$line" >> "$out/rss.csv"
        sleep 60
        minute=$((minute + 1))
    done
}
sample_memory & sampler=$!

# One election after another beside the referendum, each verified by the demo itself.
run_elections() {
    local n=0
    while true; do
        n=$((n + 1))
        if "$bin" demo --server http://127.0.0.1:18080 --ballots 200 --guardians 3 --quorum 2 \
            --missing 1 --spoil 0.05 --seed "$n" >"$out/election-$n.log" 2>&1; then
            echo "$(date +%T) election $n: published results equal the ballots" >> "$out/elections.txt"
        else
            echo "$(date +%T) election $n: FAILED (see election-$n.log)" >> "$out/elections.txt"
        fi
        sleep "${ELECTION_PAUSE:-60}"
    done
}
run_elections & elections=$!

voters=$(awk -v s="$seconds" -v r="$rate" 'BEGIN {printf "%d", s * r * 0.95}')
status=0
"$bin" referendum loadgen --server http://127.0.0.1:18081 --voters "$voters" --rate "$rate" \
    --duration "$seconds" --concurrency 64 --drain-timeout 900 --report-every "${REPORT_EVERY:-60}" 2>&1 | tee "$out/loadgen.txt" \
    || status=1

stop_elections
kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; sampler=
for name in "${!pids[@]}"; do
    kill -0 "${pids[$name]}" 2>/dev/null || { echo "soak: role $name died" >&2; status=1; }
done
grep -q FAILED "$out/elections.txt" && { echo "soak: an election failed" >&2; status=1; }
echo "elections: $(grep -c 'equal the ballots' "$out/elections.txt") published, $(grep -c FAILED "$out/elections.txt" || true) failed"
echo "memory per minute: $out/rss.csv"
exit $status

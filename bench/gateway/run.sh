#!/usr/bin/env bash
# The gateway benchmark of issue 4 ("Performance"): tokentrail's gateway, /v1/verify and /v1/authz
# side by side with nginx 1.22 doing the same job, on loopback, HTTP/1.1 keep-alive, 1,000 tokens
# rotated per request, a trivial upstream (nginx `return 200`, one worker).
#
#   bench/gateway/run.sh                 # the full run (15-40 minutes: it waits for idle CPUs)
#   RUNS=1 DURATION=3 bench/gateway/run.sh   # a quick look
#
# Every server under test and the upstream run on CPU $SERVER_CPU (taskset), the load generator on
# CPU $LOAD_CPU. Throughput: `wrk -t1 -c$CONNS` (closed loop). Latency at a fixed rate: ttload
# (bench/gateway/ttload.rs: open loop, latency from the due time, busy-polls its CPU). Each measurement is
# a warm-up of $WARMUP s, then $RUNS runs of $DURATION s; the table shows medians. CPU µs per
# request: busy jiffies of CPU $SERVER_CPU in /proc/stat (user+nice+system+irq+softirq) over the
# run, divided by the requests answered.
#
# Environment (all optional):
#   RUNS=3 DURATION=5 WARMUP=2 CONNS=64 FIXED_CONNS=64 RATES="5000 20000"
#   SERVER_CPU=0 LOAD_CPU=1 PORT_BASE=18180 TOKENS=1000
#   TT_BIN=path      use this tokentrail binary instead of building target/release/tokentrail
#   QUIET_WAIT=15    before each run, wait up to this long for both CPUs to be idle (others' work)
#   NICE=-19         scheduling priority of the servers and the load generator (root only)
#   KEEP=1           keep the temporary directory (data dirs, logs, raw outputs)
#   ONLY="a b1 ..."  run only these groups: a g0 b1 b1x tt verify authz fixed (default: all)
#   PROFILE=1        also record a perf profile of the durable gateway and of /v1/verify
# Output: the results table on stdout (also $WORK/results.md), raw per-run lines in $WORK/raw.tsv.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/bench/gateway
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
FIXED_CONNS=${FIXED_CONNS:-64}
RATES=${RATES:-"5000 20000"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${PORT_BASE:-18180}
TOKENS=${TOKENS:-1000}
ONLY=${ONLY:-"a g0 b1 b1x tt verify authz fixed"}
# Other processes on this machine (builds, tests) would steal CPU 0 from the servers: as root, the
# servers and the load generator run at nice -19 so that they win the CPU (set NICE=0 to turn off).
# With autogroup scheduling (Linux's default for desktop and many VMs) nice only ranks processes
# within one session, so the session's autogroup gets the same nice (restored at exit).
if [ "$(id -u)" = 0 ]; then NICE=${NICE:--19}; else NICE=0; fi
AUTOGROUP_NICE=
if [ "$NICE" != 0 ] && [ -w /proc/self/autogroup ]; then
  AUTOGROUP_NICE=$(awk '{ print $NF }' /proc/self/autogroup)
  echo "$NICE" >/proc/self/autogroup 2>/dev/null || AUTOGROUP_NICE=
fi
HIGH_LIMIT=1000000000/s # gateway.failed_attempts for the "no limit" runs (count is a u32)

UPSTREAM_PORT=$PORT_BASE
B1_PORT=$((PORT_BASE + 1))
G0_PORT=$((PORT_BASE + 2))
ADMIN_PORT=$((PORT_BASE + 10))
GW_PORT=$((PORT_BASE + 11))

want() { [[ " $ONLY " == *" $1 "* ]]; }
say() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'run.sh: %s\n' "$*" >&2
  exit 1
}

for tool in nginx wrk taskset python3 curl rustc awk; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || die "$tool is not installed (Debian: apt-get install nginx-light wrk util-linux python3 curl)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ "$(nproc --all)" -ge 2 ] || die "needs 2 CPUs (server and load generator on different cores)"
HZ=$(getconf CLK_TCK)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokentrail-bench.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  [ -n "$AUTOGROUP_NICE" ] && echo "$AUTOGROUP_NICE" >/proc/self/autogroup 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then
    say "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a command in the background pinned to the server CPU; its pid goes to PIDS and $LAST_PID.
spawn() {
  local log=$1
  shift
  nice -n "$NICE" taskset -c "$SERVER_CPU" "$@" >"$log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

stop() {
  local pid=$1 p keep=()
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do
    [ "$p" = "$pid" ] || keep+=("$p")
  done
  PIDS=("${keep[@]}")
}

wait_port() {
  local port=$1 pid=$2 i
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "the server for port $port exited (see $WORK)"
    sleep 0.1
  done
  die "nothing listens on port $port after 30 s"
}

# After each run: every server we started must still be running, else the run is void.
check_alive() {
  local pid status
  for pid in "${PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      status=0
      wait "$pid" 2>/dev/null || status=$?
      die "a server under test (pid $pid) died during '$1' with exit status $status$([ "$status" -gt 128 ] && echo " (signal $((status - 128)))"); see $WORK (KEEP=1 keeps it)"
    fi
  done
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for p in $UPSTREAM_PORT $B1_PORT $G0_PORT $ADMIN_PORT $GW_PORT; do
  port_free "$p" || die "port $p is in use (set PORT_BASE)"
done

load_cpu() { nice -n "$NICE" taskset -c "$LOAD_CPU" "$@"; }
cpu_busy() { awk -v c="cpu$SERVER_CPU" '$1 == c { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
# utime+stime ticks of the servers we started and their children (nginx workers): unlike the
# CPU-0 total, this is blind to other processes that the scheduler puts on CPU 0, but it also
# misses softirq time (the kernel's network work), so the table shows both.
proc_ticks() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pids=" ${PIDS[*]} " '{
    pid = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
    if (index(pids, " " pid " ") || index(pids, " " f[2] " ")) t += f[12] + f[13]
  } END { print t + 0 }'
}
# Waits (up to QUIET_WAIT s) until both CPUs are nearly idle, so that another process on this
# machine does not run inside a measurement; returns the busy % of the last sample.
QUIET_WAIT=${QUIET_WAIT:-15}
BUSY_NOTE=
wait_quiet() {
  local start=$SECONDS a b pct
  while :; do
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
    pct=$(awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f", d ? 100 * (y[1] - x[1]) / d : 0 }')
    if [ "$pct" -le 5 ]; then
      BUSY_NOTE=
      return 0
    fi
    if [ $((SECONDS - start)) -ge "$QUIET_WAIT" ]; then
      BUSY_NOTE="machine ${pct}% busy before the run"
      say "  warning: $BUSY_NOTE (other processes); measuring anyway"
      return 0
    fi
    sleep 2
  done
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---------------------------------------------------------------------------------------------
say "machine"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), nproc $(nproc), online $(cat /sys/devices/system/cpu/online)"
  echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg); servers and load generator at nice $NICE"
  echo "nginx: $($NGINX -v 2>&1 | sed 's/.*: //'), wrk: $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
  [ -n "${TT_BIN:-}" ] && echo "tokentrail binary: $TT_BIN (prebuilt; the repository is at the commit below)"
  echo "tokentrail: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ' (with uncommitted changes in crates/)')"
  echo "data dir filesystem: $(df -T "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')"
  python3 - "$WORK" <<'EOF'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-test")
for label, grow in (("append 8 KiB + fsync", True), ("overwrite 8 KiB + fdatasync (like a reused WAL)", False)):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    if not grow:
        os.write(fd, b"\0" * (16 << 20)); os.fsync(fd)
    n, t0, off = 0, time.time(), 0
    while time.time() - t0 < 2:
        os.pwrite(fd, b"x" * 8192, off); off = (off + 8192) % (16 << 20) if not grow else off + 8192
        (os.fsync if grow else os.fdatasync)(fd); n += 1
    el = time.time() - t0
    print(f"disk: {label}: {n / el:.0f}/s ({el / n * 1e3:.2f} ms each)")
    os.close(fd); os.unlink(path)
EOF
} | tee "$WORK/machine.txt" >&2

# ---------------------------------------------------------------------------------------------
say "build"
if [ -n "${TT_BIN:-}" ]; then
  BIN=$TT_BIN
else
  (cd "$REPO" && cargo build --release -p cli --quiet)
  BIN=$REPO/target/release/tokentrail
fi
[ -x "$BIN" ] || die "no tokentrail binary at $BIN"
rustc --edition 2024 -O -o "$WORK/ttload" "$HERE/ttload.rs"
LOAD=$WORK/ttload

# ---------------------------------------------------------------------------------------------
say "upstream (nginx return 200, 1 worker) on CPU $SERVER_CPU"
mkdir -p "$WORK/nginx"
render_conf() {
  sed -e "s#@DIR@#$WORK/nginx#g" -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" \
    -e "s#@B1_PORT@#$B1_PORT#g" -e "s#@G0_PORT@#$G0_PORT#g" "$HERE/nginx/$1.conf" >"$WORK/nginx/$1.conf"
}
start_nginx() {
  render_conf "$1"
  spawn "$WORK/nginx/$1.out" "$NGINX" -p "$WORK/nginx/" -e "$WORK/nginx/$1.error.log" -c "$WORK/nginx/$1.conf"
  wait_port "$2" "$LAST_PID"
}
start_nginx upstream "$UPSTREAM_PORT"

POLICY=$WORK/policy.toml
cat >"$POLICY" <<'EOF'
# The benchmark's route policy: every GET needs bench:read.
[[route]]
method = "GET"
path = "/*"
resource = "bench"
action = "read"
EOF

TT_PID=
start_tt() { # name durability failed_attempts
  local dir=$WORK/tt-$1
  rm -rf "$dir"
  if [ "$1" != setup ]; then cp -a "$WORK/tt-template" "$dir"; else mkdir -p "$dir"; fi
  spawn "$WORK/tt-$1.log" env TOKENTRAIL_LEDGER_DURABILITY="$2" TOKENTRAIL_GATEWAY_FAILED_ATTEMPTS="$3" \
    "$BIN" serve --data-dir "$dir" --listen "127.0.0.1:$ADMIN_PORT" --policy "$POLICY" \
    --upstream "http://127.0.0.1:$UPSTREAM_PORT" --gateway-listen "127.0.0.1:$GW_PORT" --log-level warn
  TT_PID=$LAST_PID
  wait_port "$ADMIN_PORT" "$TT_PID"
  wait_port "$GW_PORT" "$TT_PID"
}

say "tokens: $TOKENS with bench:read, through the admin API"
start_tt setup durable 60/min
python3 "$HERE/tokens.py" "http://127.0.0.1:$ADMIN_PORT" "$WORK/tt-setup/admin.token" "$WORK" "$TOKENS" >&2
stop "$TT_PID"
mv "$WORK/tt-setup" "$WORK/tt-template"
cp "$WORK/keys.map" "$WORK/nginx/keys.map"
CALLER=$(cat "$WORK/caller.txt")

# ---------------------------------------------------------------------------------------------
# Measurements. Each appends per-run lines to raw.tsv and one line of medians to results.tsv:
#   label  kind  req/s  cpu0_us  proc_us  p50_ms  p99_ms  note
printf 'label\tkind\trun\treq_s\tcpu0_us\tproc_us\tp50_ms\tp99_ms\tnote\n' >"$WORK/raw.tsv"
: >"$WORK/results.tsv"

per_req() { awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN { printf "%.2f", n ? t * 1e6 / hz / n : 0 }'; }
median_of() { printf '%s\n' "$@" | median; }

# closed LABEL PORT TOKENFILE MODE   (wrk -t1 -c$CONNS, closed loop)
closed() {
  local label=$1 port=$2 tokens=$3 mode=$4 r out c0 c1 p0 p1 reqs rps non2xx cpu pcpu
  local url=http://127.0.0.1:$port/
  say "$label: wrk -c$CONNS, ${WARMUP}s warm-up + $RUNS x ${DURATION}s"
  load_cpu wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$HERE/rotate.lua" "$url" -- "$tokens" "$mode" "$CALLER" >/dev/null
  local rps_all=() cpu_all=() pcpu_all=() notes=() busy=""
  for r in $(seq 1 "$RUNS"); do
    out=$WORK/wrk-${label//[^A-Za-z0-9]/_}-$r.txt
    wait_quiet
    [ -n "$BUSY_NOTE" ] && busy=$BUSY_NOTE
    p0=$(proc_ticks)
    c0=$(cpu_busy)
    load_cpu wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$HERE/rotate.lua" "$url" -- "$tokens" "$mode" "$CALLER" >"$out"
    c1=$(cpu_busy)
    p1=$(proc_ticks)
    check_alive "$label"
    reqs=$(awk '/requests in/ { print $1 }' "$out")
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$out")
    cpu=$(per_req $((c1 - c0)) "$reqs")
    pcpu=$(per_req $((p1 - p0)) "$reqs")
    printf '%s\tclosed\t%s\t%s\t%s\t%s\t-\t-\tnon2xx=%s %s\n' "$label" "$r" "$rps" "$cpu" "$pcpu" "${non2xx:-0}" \
      "$(grep -h 'Socket errors' "$out" || true)" >>"$WORK/raw.tsv"
    rps_all+=("$rps")
    cpu_all+=("$cpu")
    pcpu_all+=("$pcpu")
    notes+=("${non2xx:-0}")
  done
  local m_rps m_cpu m_pcpu note=""
  m_rps=$(median_of "${rps_all[@]}")
  m_cpu=$(median_of "${cpu_all[@]}")
  m_pcpu=$(median_of "${pcpu_all[@]}")
  if printf '%s\n' "${notes[@]}" | grep -qv '^0$'; then
    note="non-2xx per run: $(printf '%s/' "${notes[@]}" | sed 's#/$##')"
  fi
  [ -n "$busy" ] && note="${note:+$note; }$busy"
  printf '%s\tclosed\t%s\t%s\t%s\t-\t-\t%s\n' "$label" "$m_rps" "$m_cpu" "$m_pcpu" "$note" >>"$WORK/results.tsv"
  say "  $label: $m_rps req/s, $m_cpu µs CPU$SERVER_CPU/req ($m_pcpu in the servers) ${note:+($note)}"
}

# fixed LABEL RATE TTLOAD-ARGS...   (ttload, open loop at RATE req/s)
fixed() {
  local label=$1 rate=$2 r c0 c1 p0 p1 line ok got p50 p99 cpu pcpu
  shift 2
  say "$label: $rate req/s open loop, ${WARMUP}s warm-up + $RUNS x ${DURATION}s"
  load_cpu "$LOAD" --rate "$rate" --duration "$WARMUP" --conns "$FIXED_CONNS" "$@" >/dev/null
  local rate_all=() cpu_all=() pcpu_all=() p50_all=() p99_all=() status="" busy=""
  for r in $(seq 1 "$RUNS"); do
    wait_quiet
    [ -n "$BUSY_NOTE" ] && busy=$BUSY_NOTE
    p0=$(proc_ticks)
    c0=$(cpu_busy)
    line=$(load_cpu "$LOAD" --rate "$rate" --duration "$DURATION" --conns "$FIXED_CONNS" "$@")
    c1=$(cpu_busy)
    p1=$(proc_ticks)
    check_alive "$label"
    ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")
    got=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")
    p50=$(sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p' <<<"$line" | awk '{ printf "%.3f", $1 / 1000 }')
    p99=$(sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p' <<<"$line" | awk '{ printf "%.3f", $1 / 1000 }')
    status=$(sed -n 's/.* status=\(.*\)/\1/p' <<<"$line")
    cpu=$(per_req $((c1 - c0)) "$ok")
    pcpu=$(per_req $((p1 - p0)) "$ok")
    printf '%s\tfixed\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$r" "$got" "$cpu" "$pcpu" "$p50" "$p99" "$line" >>"$WORK/raw.tsv"
    rate_all+=("$got")
    cpu_all+=("$cpu")
    pcpu_all+=("$pcpu")
    p50_all+=("$p50")
    p99_all+=("$p99")
  done
  local m_rate m_cpu m_pcpu m_p50 m_p99 note=""
  m_rate=$(median_of "${rate_all[@]}")
  m_cpu=$(median_of "${cpu_all[@]}")
  m_pcpu=$(median_of "${pcpu_all[@]}")
  m_p50=$(median_of "${p50_all[@]}")
  m_p99=$(median_of "${p99_all[@]}")
  [[ "$status" =~ ^200:[0-9]+$ ]] || note="last run: $status"
  [ -n "$busy" ] && note="${note:+$note; }$busy"
  printf '%s\tfixed\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$m_rate" "$m_cpu" "$m_pcpu" "$m_p50" "$m_p99" "$note" >>"$WORK/results.tsv"
  say "  $label: $m_rate req/s, $m_cpu µs CPU$SERVER_CPU/req ($m_pcpu in the servers), p50 $m_p50 ms, p99 $m_p99 ms ${note:+($note)}"
}

# fixed_all NAME PORT MODE: the fixed-rate runs of one path at every rate in $RATES.
fixed_all() {
  local name=$1 port=$2 mode=$3 rate
  for rate in $RATES; do
    case $mode in
      bearer) fixed "$name @$rate/s" "$rate" --addr "127.0.0.1:$port" --path /items/1 \
        --header 'Authorization: Bearer {token}' --tokens "$WORK/tokens.txt" ;;
      verify) fixed "$name @$rate/s" "$rate" --addr "127.0.0.1:$port" --method POST --path /v1/verify \
        --header "Authorization: Bearer $CALLER" --body '{"token":"{token}","method":"GET","path":"/items/1"}' \
        --tokens "$WORK/tokens.txt" ;;
      authz) fixed "$name @$rate/s" "$rate" --addr "127.0.0.1:$port" --path /v1/authz \
        --header 'Authorization: Bearer {token}' --header 'X-Original-Method: GET' --header 'X-Original-URI: /items/1' \
        --tokens "$WORK/tokens.txt" ;;
    esac
  done
}

# The ledger's fsyncs per second during one extra (unreported) closed-loop run of the gateway,
# counted with perf's syscall tracepoints when perf can. Durable throughput is bounded by
# (connections in flight) x (commits per second), since a response waits for its batch.
fsync_probe() {
  local label=$1
  command -v perf >/dev/null || return 0
  perf stat -e syscalls:sys_enter_fsync true >/dev/null 2>&1 || return 0
  load_cpu perf stat -x, -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -p "$TT_PID" \
    -o "$WORK/fsync-$label.csv" -- sleep "$DURATION" &
  local perf_pid=$!
  load_cpu wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$HERE/rotate.lua" "http://127.0.0.1:$GW_PORT/" -- \
    "$WORK/tokens.txt" bearer >"$WORK/wrk-fsync-$label.txt"
  wait "$perf_pid" || true
  local syncs reqs
  syncs=$(awk -F, '/syscalls/ { s += $1 } END { print s + 0 }' "$WORK/fsync-$label.csv")
  reqs=$(awk '/requests in/ { print $1 }' "$WORK/wrk-fsync-$label.txt")
  awk -v s="$syncs" -v n="$reqs" -v d="$DURATION" -v c="$CONNS" -v l="$label" 'BEGIN {
    printf "%s: %.0f req/s, %.0f fsync+fdatasync/s by tokentrail, %.1f requests per sync; bound %d conns x %.0f syncs/s = %.0f req/s\n",
      l, n / d, s / d, s ? n / s : 0, c, s / d, c * s / d }' | tee -a "$WORK/fsync.txt" >&2
}

profile() { # label seconds wrk-args...
  [ "${PROFILE:-0}" = 1 ] || return 0
  local label=$1
  shift
  say "profile: $label"
  perf record -F 4999 -g -e cpu-clock -C "$SERVER_CPU" -o "$WORK/perf-$label.data" -- \
    load_cpu wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$HERE/rotate.lua" "$@" >/dev/null 2>"$WORK/perf-$label.log" || true
  {
    echo "# by thread"
    perf report -i "$WORK/perf-$label.data" --no-children -g none --sort comm --stdio 2>/dev/null | grep '%' | head -12
    echo "# by symbol"
    perf report -i "$WORK/perf-$label.data" --no-children -g none --sort comm,dso,symbol --stdio 2>/dev/null |
      grep '%' | sed 's/  */ /g' | cut -c1-150 | head -50
  } >"$WORK/perf-$label.txt" || true
}

# ---------------------------------------------------------------------------------------------
want a && closed "a direct" "$UPSTREAM_PORT" "$WORK/tokens.txt" bearer
if want g0; then
  start_nginx g0 "$G0_PORT"
  closed "G0 nginx proxy" "$G0_PORT" "$WORK/tokens.txt" bearer
fi
if want b1 || want b1x || want fixed; then
  start_nginx b1 "$B1_PORT"
fi
want b1 && closed "b1 nginx map+log" "$B1_PORT" "$WORK/tokens.txt" bearer
want b1x && closed "b1x nginx 401" "$B1_PORT" "$WORK/unknown.txt" bearer
if want fixed; then
  fixed_all "a direct" "$UPSTREAM_PORT" bearer
  fixed_all "b1 nginx map+log" "$B1_PORT" bearer
fi

for mode in durable buffered; do
  want tt || want verify || want authz || want fixed || continue
  say "tokentrail, $mode, failed_attempts 60/min (the default)"
  start_tt "$mode" "$mode" 60/min
  if want tt; then
    closed "tt $mode valid" "$GW_PORT" "$WORK/tokens.txt" bearer
    [ "$mode" = durable ] && fsync_probe "tt durable valid"
  fi
  want verify && closed "verify $mode" "$ADMIN_PORT" "$WORK/tokens.txt" verify
  want authz && closed "authz $mode" "$ADMIN_PORT" "$WORK/tokens.txt" authz
  if want fixed; then
    fixed_all "tt $mode" "$GW_PORT" bearer
    fixed_all "verify $mode" "$ADMIN_PORT" verify
    fixed_all "authz $mode" "$ADMIN_PORT" authz
  fi
  if [ "$mode" = durable ]; then
    profile tt-durable-valid "http://127.0.0.1:$GW_PORT/" -- "$WORK/tokens.txt" bearer
    profile verify-durable "http://127.0.0.1:$ADMIN_PORT" -- "$WORK/tokens.txt" verify "$CALLER"
  else
    profile tt-buffered-valid "http://127.0.0.1:$GW_PORT/" -- "$WORK/tokens.txt" bearer
    profile verify-buffered "http://127.0.0.1:$ADMIN_PORT" -- "$WORK/tokens.txt" verify "$CALLER"
  fi
  # Wrong tokens last: with the default budget they put 127.0.0.1 over its failed-attempt
  # limit, after which this address is answered rate_limited (429) without a lookup.
  if want tt; then
    closed "tt $mode unknown (60/min)" "$GW_PORT" "$WORK/unknown.txt" bearer
    closed "tt $mode garbage (60/min)" "$GW_PORT" "$WORK/garbage.txt" bearer
  fi
  stop "$TT_PID"
  if want tt; then
    say "tokentrail, $mode, failed_attempts $HIGH_LIMIT (no effective limit)"
    start_tt "$mode-nolimit" "$mode" "$HIGH_LIMIT"
    closed "tt $mode unknown (no limit)" "$GW_PORT" "$WORK/unknown.txt" bearer
    closed "tt $mode garbage (no limit)" "$GW_PORT" "$WORK/garbage.txt" bearer
    [ "${PROFILE:-0}" = 1 ] && profile "tt-$mode-unknown" "http://127.0.0.1:$GW_PORT/" -- "$WORK/unknown.txt" bearer
    stop "$TT_PID"
  fi
done

# ---------------------------------------------------------------------------------------------
# The table: medians; ratios to b1 (throughput, CPU, p99 at the same rate), and CPU to b1x for
# the denial paths.
awk -F'\t' '
  function num(x) { return x == "-" || x == "" ? 0 : x + 0 }
  { label[NR] = $1; kind[NR] = $2; rps[NR] = $3; cpu[NR] = $4; pcpu[NR] = $5; p50[NR] = $6; p99[NR] = $7; note[NR] = $8
    if ($1 == "b1 nginx map+log" && $2 == "closed") { b1r = $3; b1c = $4 }
    if ($1 == "b1x nginx 401") { bxc = $4 }
    if ($1 ~ /^b1 nginx map\+log @/) { split($1, a, "@"); b1p99[a[2]] = $7 } }
  END {
    print "| path | req/s | × b1 req/s | CPU0 µs/req | × b1 CPU | × b1x CPU | servers µs/req | p50 ms | p99 ms | × b1 p99 | note |"
    print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for (i = 1; i <= NR; i++) {
      r1 = (kind[i] == "closed" && b1r) ? sprintf("%.2f", rps[i] / b1r) : ""
      c1 = (kind[i] == "closed" && b1c && num(cpu[i])) ? sprintf("%.2f", cpu[i] / b1c) : ""
      cx = (bxc && num(cpu[i]) && (label[i] ~ /unknown|garbage|401/)) ? sprintf("%.2f", cpu[i] / bxc) : ""
      q = ""
      if (kind[i] == "fixed") { split(label[i], a, "@"); if (b1p99[a[2]] > 0) q = sprintf("%.2f", p99[i] / b1p99[a[2]]) }
      printf "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label[i], rps[i], r1, cpu[i], c1, cx, pcpu[i], p50[i], p99[i], q, note[i]
    }
  }' "$WORK/results.tsv" >"$WORK/results.md"

echo
cat "$WORK/machine.txt"
[ -f "$WORK/fsync.txt" ] && cat "$WORK/fsync.txt"
echo "wrk -t1 -c$CONNS (closed loop) / ttload -c$FIXED_CONNS (open loop at the rate shown);" \
  "$RUNS runs of ${DURATION}s after ${WARMUP}s warm-up, medians; servers on CPU $SERVER_CPU, load on CPU $LOAD_CPU"
echo
cat "$WORK/results.md"
if [ "${PROFILE:-0}" = 1 ]; then
  for f in "$WORK"/perf-*.txt; do
    [ -f "$f" ] || continue
    echo
    echo "## $(basename "$f" .txt): top symbols on CPU $SERVER_CPU"
    cat "$f"
  done
fi

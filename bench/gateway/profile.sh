#!/usr/bin/env bash
# Where tokentrail's CPU goes per request: runs the server under valgrind's callgrind (exact
# instruction counts, so the answer does not depend on what else the machine is doing), sends a
# fixed number of requests of one kind, and prints the inclusive cost of the interesting functions
# in instructions per request.
#
#   bench/gateway/profile.sh [gateway|gateway-unknown|verify|authz]... (default: gateway verify)
#
# Environment: N=2000 requests measured (after 1,100 warm-up: every token once) at RATE=100 per second, DURABILITY=durable|buffered,
# TT_BIN=path (default target/release/tokentrail, built if missing), PORT_BASE=18280, KEEP=1.
# Needs valgrind (Debian: apt-get install valgrind). The release profile keeps line tables, so
# callgrind names functions; `callgrind_annotate --inclusive=yes FILE` shows everything.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/bench/gateway
N=${N:-2000}
DURABILITY=${DURABILITY:-durable}
PORT_BASE=${PORT_BASE:-18280}
UPSTREAM_PORT=$PORT_BASE
ADMIN_PORT=$((PORT_BASE + 10))
GW_PORT=$((PORT_BASE + 11))
KINDS=("$@")
[ ${#KINDS[@]} -gt 0 ] || KINDS=(gateway verify)

command -v valgrind >/dev/null || { echo "profile.sh: valgrind is not installed" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "${TT_BIN:-}" ]; then
  (cd "$REPO" && cargo build --release -p cli --quiet)
  TT_BIN=$REPO/target/release/tokentrail
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokentrail-profile.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
  local i
  for i in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "profile.sh: the server for port $1 exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "profile.sh: nothing listens on port $1" >&2
  exit 1
}

mkdir -p "$WORK/nginx"
sed -e "s#@DIR@#$WORK/nginx#g" -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" "$HERE/nginx/upstream.conf" >"$WORK/nginx/upstream.conf"
"$NGINX" -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$WORK/nginx/upstream.conf" &
PIDS+=($!)
wait_port "$UPSTREAM_PORT" "${PIDS[-1]}"

cat >"$WORK/policy.toml" <<'EOF'
[[route]]
method = "GET"
path = "/*"
resource = "bench"
action = "read"
EOF

serve() { # data-dir [wrapper...]
  local dir=$1
  shift
  env TOKENTRAIL_LEDGER_DURABILITY="$DURABILITY" TOKENTRAIL_GATEWAY_FAILED_ATTEMPTS=1000000000/s \
    "$@" "$TT_BIN" serve --data-dir "$dir" --listen "127.0.0.1:$ADMIN_PORT" --policy "$WORK/policy.toml" \
    --upstream "http://127.0.0.1:$UPSTREAM_PORT" --gateway-listen "127.0.0.1:$GW_PORT" --log-level warn \
    >"$WORK/serve.log" 2>&1 &
  PIDS+=($!)
  wait_port "$ADMIN_PORT" "${PIDS[-1]}"
  wait_port "$GW_PORT" "${PIDS[-1]}"
}

# Tokens, made by a normal server, then the same data dir under callgrind.
serve "$WORK/data"
python3 "$HERE/tokens.py" "http://127.0.0.1:$ADMIN_PORT" "$WORK/data/admin.token" "$WORK" 1000 >&2
kill -TERM "${PIDS[-1]}"
wait "${PIDS[-1]}" || true
unset 'PIDS[-1]'
rustc --edition 2024 -O -o "$WORK/ttload" "$HERE/ttload.rs"
CALLER=$(cat "$WORK/caller.txt")

load() { # kind count
  local rate=${RATE:-100} d
  d=$(awk -v n="$2" -v r="$rate" 'BEGIN { printf "%.2f", n / r }')
  case $1 in
    gateway) "$WORK/ttload" --addr "127.0.0.1:$GW_PORT" --rate $rate --duration "$d" --conns 8 --path /items/1 \
      --header 'Authorization: Bearer {token}' --tokens "$WORK/tokens.txt" ;;
    gateway-unknown) "$WORK/ttload" --addr "127.0.0.1:$GW_PORT" --rate $rate --duration "$d" --conns 8 --path /items/1 \
      --header 'Authorization: Bearer {token}' --tokens "$WORK/unknown.txt" ;;
    verify) "$WORK/ttload" --addr "127.0.0.1:$ADMIN_PORT" --rate $rate --duration "$d" --conns 8 --method POST \
      --path /v1/verify --header "Authorization: Bearer $CALLER" \
      --body '{"token":"{token}","method":"GET","path":"/items/1"}' --tokens "$WORK/tokens.txt" ;;
    authz) "$WORK/ttload" --addr "127.0.0.1:$ADMIN_PORT" --rate $rate --duration "$d" --conns 8 --path /v1/authz \
      --header 'Authorization: Bearer {token}' --header 'X-Original-Method: GET' --header 'X-Original-URI: /items/1' \
      --tokens "$WORK/tokens.txt" ;;
  esac
}

for kind in "${KINDS[@]}"; do
  out=$WORK/callgrind.$kind.out
  cp -a "$WORK/data" "$WORK/data-$kind"
  serve "$WORK/data-$kind" valgrind --tool=callgrind --callgrind-out-file="$out"
  vg=${PIDS[-1]}
  echo "== $kind ($DURABILITY): warm-up" >&2
  load "$kind" 1100 >&2 # every token once, so the token cache is warm
  callgrind_control --zero "$vg" >/dev/null
  echo "== $kind: $N requests under callgrind" >&2
  line=$(load "$kind" "$N")
  callgrind_control --dump="measured" "$vg" >/dev/null
  echo "$line" >&2
  done_n=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")
  kill -TERM "$vg"
  wait "$vg" || true
  unset 'PIDS[-1]'
  out=$(grep -l 'measured' "$out".* 2>/dev/null | head -1) # the dump taken right after the load
  [ -n "$out" ] || { echo "profile.sh: callgrind wrote no dump" >&2; exit 1; }
  echo
  echo "## $kind ($DURABILITY): instructions per request over $done_n requests, inclusive (top functions)"
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  awk -v t="$total" -v n="$done_n" 'BEGIN { printf "total: %.0f instructions per request\n", t / n }'
  callgrind_annotate --inclusive=yes --threshold=100 "$out" >"$out.inclusive.txt" 2>/dev/null || true
  # One line per function (callgrind lists inlined code under several file names), runtime
  # plumbing (tokio, futures, std) left out.
  awk -v n="$done_n" '/^ *[0-9,]+ \(/ {
      c = $1; gsub(",", "", c); $1 = ""; $2 = ""; sub(/^ +/, ""); f = $0
      sub(/ \[[^]]*\]$/, "", f); sub(/^[^:]*:/, "", f)
      if (f ~ /^(tokio::|futures_|std::|core::|<std::|<core::|__rustc|\?\?\?)/ || seen[f]++) next
      printf "%10.0f  %s\n", c / n, substr(f, 1, 150) }' "$out.inclusive.txt" | head -"${TOP:-45}" || true
done

#!/usr/bin/env bash
# The Modbus face's own cost in a figure that noise cannot move (docs/performance.md,
# "Modbus face: instructions per request"): user-space instructions per FC3 request of
# 125 registers, counted by callgrind, for
#   - the connector (release build, fed by po-sim, its Modbus face on loopback),
#   - bare tokio-modbus (`harness bare-modbus`, a server that returns a static slice),
#   - libmodbus's C server (scripts/modbus-cost/libmodbus-server.c).
# Each server runs under callgrind twice, answering N1 and then N2 requests over one
# connection from scripts/modbus-cost/client.py; the figure is the marginal cost
# (I(N2) - I(N1)) / (N2 - N1), so start-up, catalogue and shutdown cancel out.
#
#   scripts/modbus-cost.sh [N1 N2]     default 2000 12000
#   MODBUS_COST_KEEP=DIR scripts/modbus-cost.sh   also keep the callgrind profiles in DIR
#                                      (read one with callgrind_annotate)
#
# Installs valgrind, gcc and libmodbus-dev with apt when missing (as root); builds the
# release binaries. Prints one line per server and a JSON summary on the last line.
# Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
n1=${1:-2000}
n2=${2:-12000}
if ! [[ $n1 =~ ^[0-9]+$ && $n2 =~ ^[0-9]+$ ]] || [ "$n2" -le "$n1" ]; then
  echo "usage: scripts/modbus-cost.sh [N1 N2] (integers, N2 > N1)" >&2
  exit 2
fi

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v gcc >/dev/null || missing+=(gcc)
[ -f /usr/include/modbus/modbus.h ] || missing+=(libmodbus-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "modbus-cost: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p smart-connector -p po-simulator -p harness
bin="$target/release"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${MODBUS_COST_KEEP:-}" ]; then
    mkdir -p "$MODBUS_COST_KEEP" && cp "$work"/*.callgrind "$MODBUS_COST_KEEP"/ 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -o "$work/libmodbus-server" scripts/modbus-cost/libmodbus-server.c \
  $(pkg-config --cflags --libs libmodbus 2>/dev/null || echo "-I/usr/include/modbus -lmodbus")

# The connector's upstream: a small site whose values stay put (a scan every 10 s), so
# that what the connector does besides answering requests is small and the same in both
# runs.
cat >"$work/po-sim.toml" <<EOF
name = "po-server"
listen = "127.0.0.1:24611"
seed = 7
heartbeat = "250ms"

[site]
devices = 20
tags_per_device = 16
scan_period = "10s"
EOF
cat >"$work/connector.toml" <<EOF
name = "sc"
host_address = "127.0.0.1"

[[source]]
name = "po-server"
address = "127.0.0.1:24611"
access = "local"

[modbus]
listen = "127.0.0.1:24612"
EOF
"$bin/po-sim" serve --config "$work/po-sim.toml" >"$work/po-sim.log" 2>&1 &
pids+=($!)

# Instructions (callgrind's Ir total) of one server process answering N requests.
# $1 label, $2 N, $3 port, $4 signal to stop it with after the client is done ("" if it
# exits by itself), rest: the command.
instructions() {
  local label=$1 n=$2 port=$3 stop=$4
  shift 4
  local out="$work/$label-$n.callgrind"
  valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
    "$@" >"$work/$label-$n.log" 2>&1 &
  local pid=$!
  python3 scripts/modbus-cost/client.py 127.0.0.1 "$port" "$n" "$address" 125 >/dev/null
  [ -n "$stop" ] && kill "-$stop" "$pid"
  wait "$pid" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

report() {
  local label=$1 port=$2 stop=$3
  shift 3
  local i1 i2
  i1=$(instructions "$label" "$n1" "$port" "$stop" "$@")
  i2=$(instructions "$label" "$n2" "$port" "$stop" "$@")
  local per=$(((i2 - i1) / (n2 - n1)))
  printf '%-12s %8d instructions per request  (I(%d)=%d, I(%d)=%d)\n' "$label" "$per" "$n1" "$i1" "$n2" "$i2" >&2
  echo "\"$label\": $per"
}

# Register 100 onwards: the connector's data (the status block is 0..31); the same
# address for every server.
address=100
echo "modbus-cost: FC3 x 125 registers, marginal over $n1 and $n2 requests (callgrind)" >&2
connector=$(report connector 24612 TERM "$bin/smart-connector" run --config "$work/connector.toml")
tokio_modbus=$(report tokio-modbus 24613 INT "$bin/harness" bare-modbus --listen 127.0.0.1:24613)
libmodbus=$(report libmodbus 24614 "" "$work/libmodbus-server" 127.0.0.1 24614)
echo "{ $connector, $tokio_modbus, $libmodbus, \"n1\": $n1, \"n2\": $n2 }"

# shellcheck shell=bash disable=SC2034
# bench/lib.sh: helpers shared by bench/concurrency and bench/overhead.
# Sourced, not run.  Needs bash, awk, sed, ss (iproute2), and for HTTP/2
# upstreams node and the openssl command line.
#
# Binaries: FERRY_BUILD_DIR (default ROOT/build) is built if needed, then
# ferry, loadgen and fault_server are copied into the run's temp dir, so that
# a rebuild by someone else during the run cannot swap a binary under it
# (and so perf can still resolve its symbols).  FERRY_BIN overrides the ferry
# binary (to measure another build with the same script).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD=${FERRY_BUILD_DIR:-$ROOT/build}

BENCH_PIDS=()
BENCH_TMP=""

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

bench_cleanup() {
    local p
    for p in "${BENCH_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${BENCH_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ -n "$BENCH_TMP" ] && [ -z "${BENCH_KEEP:-}" ]; then
        rm -rf "$BENCH_TMP"
    fi
}

# Builds what the benchmarks run (incremental: nothing to do when current),
# makes the temp dir and copies the binaries into it.
bench_setup() {
    command -v ss >/dev/null || die "needs ss (iproute2)"
    if [ ! -f "$BUILD/CMakeCache.txt" ]; then
        cmake -S "$ROOT" -B "$BUILD" >/dev/null || die "cmake configure failed"
    fi
    cmake --build "$BUILD" -j2 --target ferry loadgen fault_server >/dev/null ||
        die "build failed (run: cmake --build $BUILD --target ferry loadgen fault_server)"
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$BENCH_TMP/bin"
    cp "${FERRY_BIN:-$BUILD/ferry}" "$BENCH_TMP/bin/ferry"
    cp "$BUILD/loadgen" "$BUILD/fault_server" "$BENCH_TMP/bin/"
    FERRY="$BENCH_TMP/bin/ferry"
    LOADGEN="$BENCH_TMP/bin/loadgen"
    FAULT_SERVER="$BENCH_TMP/bin/fault_server"
}

# Waits until FILE has a line "listening HOST:PORT" and prints HOST:PORT.
wait_listening() {
    local file=$1 pid=$2 i addr
    for i in $(seq 1 100); do
        addr=$(sed -n 's/^listening \([^ ]*\).*/\1/p' "$file" 2>/dev/null | head -1)
        if [ -n "$addr" ]; then
            echo "$addr"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# start_fault_server: sets FS_PID, FS_ADDR.
start_fault_server() {
    "$FAULT_SERVER" --listen 127.0.0.1:0 >"$BENCH_TMP/fault_server.out" 2>&1 &
    FS_PID=$!
    BENCH_PIDS+=("$FS_PID")
    FS_ADDR=$(wait_listening "$BENCH_TMP/fault_server.out" "$FS_PID") ||
        die "fault_server did not start: $(cat "$BENCH_TMP/fault_server.out")"
}

# start_h2_upstream: a self-signed certificate for 127.0.0.1, then
# bench/h2_upstream.js.  Sets H2_PID, H2_ADDR (HTTP/2 over TLS), H2_H1_ADDR
# (the same process over cleartext HTTP/1.1) and H2_CERT.
start_h2_upstream() {
    command -v node >/dev/null || die "needs node (Debian package nodejs)"
    command -v openssl >/dev/null || die "needs the openssl command line (Debian package openssl)"
    H2_CERT="$BENCH_TMP/cert.pem"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$BENCH_TMP/key.pem" -out "$H2_CERT" -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || die "openssl could not make a certificate"
    node "$BENCH_DIR/h2_upstream.js" --cert "$H2_CERT" --key "$BENCH_TMP/key.pem" \
        --max-streams "${H2_MAX_STREAMS:-128}" --h1-port-file "$BENCH_TMP/h2_h1.port" \
        >"$BENCH_TMP/h2.out" 2>&1 &
    H2_PID=$!
    BENCH_PIDS+=("$H2_PID")
    H2_ADDR=$(wait_listening "$BENCH_TMP/h2.out" "$H2_PID") ||
        die "h2_upstream did not start: $(cat "$BENCH_TMP/h2.out")"
    H2_H1_ADDR="127.0.0.1:$(cat "$BENCH_TMP/h2_h1.port")"
}

# Prints the port a process listens on (its first listening TCP socket).
listen_port_of() {
    ss -Htlnp 2>/dev/null | awk -v pid="pid=$1," 'index($0, pid) { n = split($4, a, ":"); print a[n]; exit }'
}

# start_ferry NAME BASE_URL [extra serve args...]: a data dir with a key, then
# ferry serve.  Sets FERRY_PID, FERRY_URL (.../v1/tools/call), FERRY_KEY.
start_ferry() {
    local name=$1 base=$2 data port i
    shift 2
    FERRY_STARTS=$((${FERRY_STARTS:-0} + 1))
    data="$BENCH_TMP/data-$name-$FERRY_STARTS"
    FERRY_KEY=$("$FERRY" keys create --user bench --team bench --data "$data" 2>/dev/null) ||
        die "ferry keys create failed"
    "$FERRY" serve --listen 127.0.0.1:0 --data "$data" --providers "$ROOT/tests/providers" \
        --base-url "sample=$base" --log-level warn "$@" 2>"$BENCH_TMP/ferry-$name.err" &
    FERRY_PID=$!
    BENCH_PIDS+=("$FERRY_PID")
    port=""
    for i in $(seq 1 100); do
        # The "listening" log line (printed at any --log-level by current
        # builds); older builds printed it at info only, hence ss.
        port=$(sed -n 's/.*"msg":"listening","addr":"[^"]*:\([0-9]*\)".*/\1/p' \
            "$BENCH_TMP/ferry-$name.err" | head -1)
        [ -n "$port" ] || port=$(listen_port_of "$FERRY_PID")
        [ -n "$port" ] && break
        kill -0 "$FERRY_PID" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$port" ] || die "ferry did not start: $(cat "$BENCH_TMP/ferry-$name.err")"
    FERRY_URL="http://127.0.0.1:$port/v1/tools/call"
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# jget JSON KEY: a number from loadgen's flat JSON (keys used are unique).
jget() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p"
}

# The error_breakdown object, for printing when errors > 0.
jerrors() {
    printf '%s\n' "$1" | sed -n 's/.*"error_breakdown":\({[^}]*}[^}]*}[^}]*}\).*/\1/p'
}

# CPU ticks (utime + stime) of a process, and ticks per second.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# VmHWM / VmRSS of a process in MB.
vm_mb() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# Established TCP connections to a local port (for counting upstream
# connections ferry holds).
conns_to_port() { ss -Htn state established "( dport = :$1 )" 2>/dev/null | wc -l; }

# calc FORMAT EXPR: EXPR evaluated by awk, printed with printf FORMAT.
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

machine_line() {
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2/1048576 }' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg), open files $(ulimit -Hn) hard; $(date -u '+%Y-%m-%d %H:%M UTC')"
}

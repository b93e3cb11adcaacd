#!/usr/bin/env bash
# Shared by scripts/pg-e2e and scripts/pg-scale (sourced, not run): PostgreSQL's binaries and
# the postgres user, the pg-pipeline build, a private cluster on 127.0.0.1 on a free port that
# is stopped and removed whatever happens (trap), and the helpers both scripts use.
#
# The sourcing script sets ROOT, OUT (results; the logs of the last run go to $OUT/logs),
# PROFILE (release or debug) and PG_TAG (its name, in log lines and the temp dir), then calls
#   pg_binaries; pg_build; pg_cluster
# which set PGBIN, as_pg, BIN, WORK, DATA, SOCK, PORT, CONN and PIDS.
# shellcheck disable=SC2034 # the variables set here are the sourcing script's

say() { printf '[%s %(%H:%M:%S)T] %s\n' "${PG_TAG:-pg}" -1 "$*"; }
fail() { say "FAIL: $*"; exit 1; }

# PostgreSQL's binaries (installed from Debian's packages if missing) and the postgres user.
pg_binaries() {
    PGBIN=$("$ROOT/scripts/install-postgres")
    if [[ $(id -u) -eq 0 ]]; then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
        fi
        as_pg() { runuser -u postgres -- "$@"; }
    else
        as_pg() { "$@"; }
    fi
}

# pg-pipeline, built in $PROFILE; BIN is the binary.
pg_build() {
    say "building pg-pipeline ($PROFILE)"
    if [[ $PROFILE == release ]]; then
        cargo build --quiet --release --manifest-path "$ROOT/pg-pipeline/Cargo.toml"
    else
        cargo build --quiet --manifest-path "$ROOT/pg-pipeline/Cargo.toml"
    fi
    local dir=${CARGO_TARGET_DIR:-$ROOT/pg-pipeline/target}
    BIN=$dir/$([[ $PROFILE == release ]] && echo release || echo debug)/pg-pipeline
}

# Kills what `start` started, stops the server, keeps the logs in $OUT/logs, removes the
# cluster's directory.
pg_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    { wait; } 2>/dev/null || true
    if [[ -f $DATA/postmaster.pid ]]; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    mkdir -p "$OUT/logs"
    cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
    rm -rf "$WORK"
    if [[ $rc -eq 0 ]]; then say "PASS"; else say "exit $rc (logs in $OUT/logs)"; fi
    exit "$rc"
}

# A private cluster (initdb as user postgres, data in a temp dir, wal_level=logical) on
# 127.0.0.1 on a free port. Extra server settings (`-c name=value ...`) in $PG_EXTRA_OPTS.
pg_cluster() {
    WORK=$(mktemp -d "/tmp/${PG_TAG:-pg}.XXXXXX")
    chmod 755 "$WORK"
    DATA=$WORK/data
    SOCK=$WORK/sock
    mkdir -p "$SOCK" "$DATA" "$OUT"
    chmod 700 "$DATA"
    touch "$WORK/postgres.log"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$SOCK" "$DATA" "$WORK/postgres.log"; fi
    PIDS=()
    trap pg_cleanup EXIT
    trap 'exit 130' INT TERM

    say "initdb ($PGBIN) in $DATA"
    as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 \
        || { cat "$WORK/initdb.log"; fail "initdb"; }
    local started=0 _
    for _ in 1 2 3; do
        PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        # The server's own durability is not under test: fsync=off keeps the workload cheap.
        if as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/postgres.log" -w -t 60 -o "\
-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$SOCK \
-c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=10 \
-c fsync=off -c full_page_writes=off \
-c checkpoint_timeout=1h -c max_wal_size=4GB ${PG_EXTRA_OPTS:-}" start >/dev/null; then
            started=1
            break
        fi
    done
    [[ $started -eq 1 ]] || { tail -20 "$WORK/postgres.log"; fail "could not start PostgreSQL"; }
    say "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT"
    CONN="host=127.0.0.1 port=$PORT user=postgres dbname=postgres"
}

psql_() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"; }

# start NAME ARGS...: runs the pipeline binary in the background, log in $WORK/NAME.log.
start() {
    local name=$1
    shift
    "$BIN" "$@" >>"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# kv KEY LINE: the value of KEY=... in a line of key=value pairs.
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | head -1; }
stop_pid() { kill -9 "$1" 2>/dev/null || true; { wait "$1"; } 2>/dev/null || true; }
# catch_up SECS SLOT...: a fence transaction, then wait until every slot acknowledged past it.
catch_up() {
    local before secs=$1 s _
    shift
    before=$(psql_ -c "SELECT pg_current_wal_lsn()")
    psql_ -c "INSERT INTO public.t0 (payload) VALUES ('fence')" >/dev/null
    for s in "$@"; do
        for _ in $(seq 1 $(( secs * 4 ))); do
            if [[ $(psql_ -c "SELECT confirmed_flush_lsn > '$before' FROM pg_replication_slots WHERE slot_name = '$s'") == t ]]; then
                continue 2
            fi
            sleep 0.25
        done
        return 1
    done
}
# A Python with matplotlib, if there is one (the default python3 may be a pyenv without it);
# empty otherwise.
plot_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if "$py" -c 'import matplotlib' 2>/dev/null; then echo "$py"; return 0; fi
    done
    return 0
}

# Shared helpers of the demo and test scripts: packages, build, a throwaway
# cluster owned by postgres, and the mock provider.  Source it, don't run it.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-15-cron libcurl4-openssl-dev
libjansson-dev libmicrohttpd-dev curl libipc-run-perl libevent-dev make gcc clang libfuzzer-14-dev
prometheus-postgres-exporter"

# Packages some tests need and skip without, saying so (test.sh sets them)
OPTIONAL_PACKAGES=""

# Is the package installed (pgvector: built from source, see below, counts)
llmgw_installed() {
    [ "$1" = postgresql-15-pgvector ] && [ -f "$($PGBIN/pg_config --sharedir)/extension/vector.control" ] &&
        return 0
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# Install what is missing (apt-get update once, only when something is); an
# optional package that cannot be installed is reported, not fatal
llmgw_install_packages() {
    local missing="" optional=""
    for p in $PACKAGES; do
        llmgw_installed "$p" || missing="$missing $p"
    done
    for p in $OPTIONAL_PACKAGES; do
        llmgw_installed "$p" || optional="$optional $p"
    done
    [ -z "$missing$optional" ] && return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    if [ -n "$missing" ]; then
        echo "installing:$missing"
        apt-get install -y -q $missing >/dev/null || return 1
    fi
    for p in $optional; do
        echo "installing $p"
        if apt-cache show "$p" >/dev/null 2>&1; then
            apt-get install -y -q "$p" >/dev/null
        elif [ "$p" = postgresql-15-pgvector ]; then
            llmgw_build_pgvector
        else
            false
        fi || echo "$p could not be installed: the tests that need it are skipped"
    done
    return 0
}

# pgvector for PostgreSQL 15 when apt has no postgresql-15-pgvector (Debian
# 12 has none; later releases and the PostgreSQL project's repository do):
# Debian's own source package of pgvector, of the release after this one,
# fetched by apt-get source from this machine's Debian mirror (its files
# checked against the signed index) with lists of its own (the system's
# are not touched), and built and installed with PGXS
llmgw_build_pgvector() {
    local uri dir opts
    uri=$(apt-cache policy | awk -v s="$(. /etc/os-release; echo "$VERSION_CODENAME")/main" \
        '$3 == s { print $2; exit }')
    [ -n "$uri" ] || return 1
    dir=$(mktemp -d)
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" \
        >"$dir/sources.list"
    opts="-q -o Dir::Etc::SourceList=$dir/sources.list -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists=$dir/lists -o Dir::Cache=$dir/cache -o APT::Sandbox::User=root"
    (cd "$dir" && apt-get $opts update >/dev/null && apt-get $opts source --download-only pgvector >/dev/null &&
        tar -xzf pgvector_*.orig.tar.gz && cd pgvector-*/ &&
        make -s PG_CONFIG=$PGBIN/pg_config OPTFLAGS= >/dev/null 2>&1 &&
        make -s PG_CONFIG=$PGBIN/pg_config install >/dev/null 2>&1)
    local rc=$?
    rm -rf "$dir"
    return $rc
}

# Build and install the extension and build the mock; fails when any step
# fails (a failed build must not leave the tests running an older llmgw.so)
llmgw_build() {
    make -s -C "$LLMGW_ROOT" PG_CONFIG=$PGBIN/pg_config >/dev/null &&
        make -s -C "$LLMGW_ROOT" PG_CONFIG=$PGBIN/pg_config install >/dev/null &&
        make -s -C "$LLMGW_ROOT/test/mock" >/dev/null
}

# Start a throwaway cluster in $LLMGW_TMP; sets PGHOST, PGUSER.  Any
# llmgw_admin may use env:LLMGW_* and the files of $LLMGW_TMP/secrets as
# provider secrets (docs/security.md); the rest only a superuser.
# LLMGW_POSTGRES, when set, is the executable pg_ctl starts instead of
# $PGBIN/postgres: a wrapper that execs it (valgrind: the pid stays the
# postmaster's, as pg_ctl checks); PGCTLTIMEOUT is pg_ctl's wait in seconds.
llmgw_cluster_start() {
    chown postgres "$LLMGW_TMP"
    runuser -u postgres -- $PGBIN/initdb -D "$LLMGW_TMP/data" -A trust >/dev/null
    cat >>"$LLMGW_TMP/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$LLMGW_TMP'
shared_preload_libraries = 'llmgw,pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 32
max_connections = 100
llmgw.database = 'postgres'
llmgw.secret_env_prefix = 'LLMGW_'
llmgw.secret_directory = '$LLMGW_TMP/secrets'
${LLMGW_EXTRA_CONF:-}
CONF
    runuser -u postgres -- env ${LLMGW_SERVER_ENV:-} $PGBIN/pg_ctl -D "$LLMGW_TMP/data" \
        ${LLMGW_POSTGRES:+-p "$LLMGW_POSTGRES"} -l "$LLMGW_TMP/server.log" -w start >/dev/null
    export PGHOST="$LLMGW_TMP" PGUSER=postgres PGDATABASE=postgres
}

llmgw_cluster_stop() {
    [ -f "$LLMGW_TMP/data/postmaster.pid" ] &&
        runuser -u postgres -- $PGBIN/pg_ctl -D "$LLMGW_TMP/data" -m fast -w stop >/dev/null 2>&1
    return 0
}

# Start the mock on a free port; sets LLMGW_MOCK_URL and LLMGW_MOCK_PID
llmgw_mock_start() {
    "$LLMGW_ROOT/test/mock/llmgw-mock" --port 0 --port-file "$LLMGW_TMP/mock.port" "$@" \
        >"$LLMGW_TMP/mock.log" 2>&1 &
    LLMGW_MOCK_PID=$!
    for _ in $(seq 100); do
        [ -s "$LLMGW_TMP/mock.port" ] && break
        sleep 0.05
    done
    LLMGW_MOCK_PORT=$(cat "$LLMGW_TMP/mock.port")
    export LLMGW_MOCK_URL="http://127.0.0.1:$LLMGW_MOCK_PORT/v1" LLMGW_MOCK_PORT
}

llmgw_mock_stop() {
    [ -n "${LLMGW_MOCK_PID:-}" ] && kill "$LLMGW_MOCK_PID" 2>/dev/null
    wait "${LLMGW_MOCK_PID:-}" 2>/dev/null
    return 0
}

# A free TCP port on 127.0.0.1
llmgw_free_port() {
    perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport'
}

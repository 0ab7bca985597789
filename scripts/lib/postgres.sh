# Finding or starting a PostgreSQL server for the scripts (sourced, not run): the same order as
# the test harness (testkit): the URL the caller gives, else a server at 127.0.0.1:5432, else a
# throwaway cluster started from the installed PostgreSQL binaries (as `postgres` through
# runuser when root), which the caller removes with pg_stop_throwaway.
#
#   pg_find_or_start [URL]   sets PG_BASE_URL (postgres://user@host:port, no database)
#   pg_stop_throwaway        stops and removes the throwaway cluster, if one was started

PG_THROWAWAY_DIR=""
PG_RUN_AS=()

# The PostgreSQL server binaries: pg_config's, else the newest under /usr/lib/postgresql, else
# the PATH's. Prints nothing and fails when there are none.
pg_bindir() {
  local dir
  dir=$(pg_config --bindir 2>/dev/null || true)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    # Newest major first, the first with a server (a newer client may sit beside it).
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
      [ -x "$dir/initdb" ] && break
    done
  fi
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    dir=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
  fi
  [ -x "$dir/initdb" ] && echo "$dir"
}

# psql that never asks for a password (-w): a server that wants one counts as unreachable.
pg_psql() {
  local bindir
  bindir=$(pg_bindir || true)
  if [ -n "$bindir" ] && [ -x "$bindir/psql" ]; then "$bindir/psql" -w "$@"; else psql -w "$@"; fi
}

pg_reachable() { # base-url
  pg_psql "$1/postgres" -Atqc 'select 1' >/dev/null 2>&1
}

pg_find_or_start() { # [base-url]
  if [ -n "${1:-}" ]; then
    pg_reachable "$1" || { echo "no PostgreSQL reachable at $1" >&2; return 1; }
    PG_BASE_URL=$1
    return 0
  fi
  if pg_reachable "postgres://postgres@127.0.0.1:5432"; then
    PG_BASE_URL="postgres://postgres@127.0.0.1:5432"
    return 0
  fi
  local bindir port
  bindir=$(pg_bindir) || {
    echo "no PostgreSQL at 127.0.0.1:5432 and no PostgreSQL binaries to start one:" \
      "install PostgreSQL 14 or later (Debian: apt-get install postgresql)" >&2
    return 1
  }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 54329)
  PG_THROWAWAY_DIR=$(mktemp -d /tmp/taskpilot-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$PG_THROWAWAY_DIR"
    PG_RUN_AS=(runuser -u postgres --)
  fi
  "${PG_RUN_AS[@]}" "$bindir/initdb" -D "$PG_THROWAWAY_DIR/data" -U postgres -A trust --no-sync >/dev/null
  "${PG_RUN_AS[@]}" "$bindir/pg_ctl" -D "$PG_THROWAWAY_DIR/data" -l "$PG_THROWAWAY_DIR/log" -w \
    -o "-p $port -k $PG_THROWAWAY_DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
  PG_BASE_URL="postgres://postgres@127.0.0.1:$port"
  echo "started a throwaway PostgreSQL cluster at $PG_BASE_URL ($PG_THROWAWAY_DIR)" >&2
}

pg_stop_throwaway() {
  [ -n "$PG_THROWAWAY_DIR" ] || return 0
  local bindir
  bindir=$(pg_bindir || true)
  [ -n "$bindir" ] && "${PG_RUN_AS[@]}" "$bindir/pg_ctl" -D "$PG_THROWAWAY_DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$PG_THROWAWAY_DIR"
  PG_THROWAWAY_DIR=""
}

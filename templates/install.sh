#!/bin/sh
# Install {{ name }} {{ version }} (llmcrate {{ tool_version }}) on this host. No network needed.
# POSIX sh + python3 >= 3.9; pip runs from its bundled wheel (no venv, no ensurepip, no index).
# Re-running upgrades in place and keeps models; any failure rolls back to what was there before.
set -eu
umask 022

BUNDLE_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
PREFIX=/usr/local
MODELS_DIR=
HOST=
RUNTIME=
SYSTEMD=auto
YES=0
DRY_RUN=0
UNIT_DIR=${LLMCRATE_UNIT_DIR:-/etc/systemd/system}
LLMCRATE_WHEEL="$BUNDLE_DIR/wheels/{{ llmcrate_wheel }}"
BUNDLE_PYTHONS={{ python | join(' ') | shquote }}

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<'EOF'
Usage: ./install.sh [options]

Install {{ name }} {{ version }}: the llmcrate server, its models and llama.cpp runtimes.

  --prefix DIR        install under DIR (default /usr/local)
  --models-dir DIR    model store (default /var/lib/llmcrate/models; PREFIX/var/lib/llmcrate/models
                      for another prefix)
  --host ADDR:PORT    address the server listens on (default {{ service.host }})
  --runtime R         auto|cpu|cuda|rocm (default auto: chosen again at every start)
  --no-systemd        do not install the systemd unit; print how to run start.sh
  --systemd           install the unit even if systemd does not look like it is running
  --yes               do not ask for confirmation
  --dry-run           preflight and verify only; change nothing
  -h, --help          this help
EOF
}

need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value"; fi; }
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --models-dir) need_arg "$@"; MODELS_DIR=$2; shift 2 ;;
        --models-dir=*) MODELS_DIR=${1#*=}; shift ;;
        --host) need_arg "$@"; HOST=$2; shift 2 ;;
        --host=*) HOST=${1#*=}; shift ;;
        --runtime) need_arg "$@"; RUNTIME=$2; shift 2 ;;
        --runtime=*) RUNTIME=${1#*=}; shift ;;
        --no-systemd) SYSTEMD=no; shift ;;
        --systemd) SYSTEMD=yes; shift ;;
        --yes|-y) YES=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

case $PREFIX in /*) ;; *) PREFIX=$(pwd)/$PREFIX ;; esac
LIB=$PREFIX/lib/llmcrate
# An upgrade keeps the previous install's choices unless the flags say otherwise.
if [ -r "$LIB/install.conf" ]; then
    if [ -z "$MODELS_DIR" ]; then MODELS_DIR=$(. "$LIB/install.conf" && printf '%s' "${MODELS_DIR:-}"); fi
    if [ -z "$HOST" ]; then HOST=$(. "$LIB/install.conf" && printf '%s' "${HOST:-}"); fi
    if [ -z "$RUNTIME" ]; then RUNTIME=$(. "$LIB/install.conf" && printf '%s' "${RUNTIME:-}"); fi
fi
: "${HOST:={{ service.host }}}"
: "${RUNTIME:=auto}"
case $RUNTIME in auto|cpu|cuda|rocm|cuda[0-9]*|rocm[0-9]*) ;; *) die "--runtime must be auto, cpu, cuda or rocm" ;; esac
if [ -z "$MODELS_DIR" ]; then
    if [ "$PREFIX" = /usr/local ] || [ "$PREFIX" = /usr ]; then
        MODELS_DIR=/var/lib/llmcrate/models
    else
        MODELS_DIR=$PREFIX/var/lib/llmcrate/models
    fi
fi
case $MODELS_DIR in /*) ;; *) MODELS_DIR=$(pwd)/$MODELS_DIR ;; esac
for p in "$PREFIX" "$MODELS_DIR"; do
    case $p in *[[:space:]]*|*\"*|*\\*) die "paths with spaces, quotes or backslashes are not supported: '$p'" ;; esac
done
if [ "$PREFIX" = /usr ]; then ETC_DIR=/etc/llmcrate; else ETC_DIR=$PREFIX/etc/llmcrate; fi

writable() {  # the folder, or the nearest one above it that exists, is writable
    d=$1
    while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done
    [ -d "$d" ] && [ -w "$d" ]
}
for p in "$PREFIX" "$MODELS_DIR"; do
    writable "$p" || die "cannot write to $p (run as root, or choose --prefix / --models-dir)"
done

# --- python3 -------------------------------------------------------------------------------
find_python() {
    for cand in ${LLMCRATE_PYTHON:-}{% for v in python | reverse %} python{{ v }}{% endfor %} python3; do
        exe=$(command -v "$cand" 2>/dev/null) || continue
        ver=$("$exe" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
        case " $BUNDLE_PYTHONS " in
            *" $ver "*)
                PYTHON=$("$exe" -c 'import sys; print(sys.executable)') && [ -x "$PYTHON" ] || PYTHON=$exe
                PY_VERSION=$ver
                return 0 ;;
        esac
        FOUND_OTHER="$exe ($ver)"
    done
    return 1
}
PYTHON=
FOUND_OTHER=
if ! find_python; then
    if [ -n "$FOUND_OTHER" ]; then
        die "this bundle carries wheels for Python {{ python | join(', ') }}; found only $FOUND_OTHER"
    fi
    die "python3 not found: install python3 (3.9 or newer; this bundle needs {{ python | join(' or ') }})"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "$PYTHON is older than 3.9"
[ -f "$LLMCRATE_WHEEL" ] || die "bundle incomplete: $LLMCRATE_WHEEL missing"

# Run llmcrate's stdlib-only checks straight from its wheel (a zip on sys.path).
bundle_py() { PYTHONPATH="$LLMCRATE_WHEEL" PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -s -m "$@"; }

say "==> Preflight ({{ name }} {{ version }})"
bundle_py runtime.bundle preflight "$BUNDLE_DIR" --prefix "$PREFIX" --models-dir "$MODELS_DIR" --host "$HOST" \
    || die "preflight failed; nothing was changed"
say "==> Verifying every file of the bundle"
bundle_py runtime.bundle verify "$BUNDLE_DIR" --store "$MODELS_DIR" || die "the bundle is damaged; nothing was changed"

if [ "$SYSTEMD" = auto ]; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then SYSTEMD=yes; else SYSTEMD=no; fi
fi
if [ "$SYSTEMD" = yes ] && [ "$(id -u)" != 0 ]; then
    die "installing the systemd service needs root (or use --no-systemd)"
fi

say "==> Plan"
say "  program     $LIB (python: $PYTHON $PY_VERSION)"
say "  command     $PREFIX/bin/llmcrate"
say "  settings    $ETC_DIR/llmcrate.env"
say "  models      $MODELS_DIR:{% for m in models %} {{ m.name }}{% endfor %}"
say "  listen      $HOST   runtime: $RUNTIME"
if [ "$SYSTEMD" = yes ]; then say "  service     $UNIT_DIR/llmcrate.service (user llmcrate)"; fi
if [ "$DRY_RUN" = 1 ]; then say "Dry run: nothing changed."; exit 0; fi
if [ "$YES" != 1 ]; then
    if [ -t 0 ]; then
        printf 'Proceed? [y/N] '
        read -r answer || answer=
        case $answer in y|Y|yes|YES) ;; *) die "aborted" ;; esac
    else
        die "not a terminal: pass --yes to install without asking"
    fi
fi

# --- transaction -------------------------------------------------------------------------------
# Every step is written to $TXN first, so that a run killed at any point (SIGKILL, power loss)
# is rolled back, or cleaned up when it had committed, by the next run (runtime.bundle recover).
mkdir -p "$PREFIX/lib"
bundle_py runtime.bundle recover --lib "$LIB" --models-dir "$MODELS_DIR" \
    || die "could not recover from an earlier interrupted install; nothing was changed"
STAMP=$$
STAGE=$PREFIX/lib/.llmcrate.new.$STAMP
OLD=$PREFIX/lib/.llmcrate.old.$STAMP
JOURNAL=$PREFIX/lib/.llmcrate.models.$STAMP.json
TXN=$PREFIX/lib/.llmcrate.txn.$STAMP
SWAPPED=0
HAD_LIB=0
DONE=0
BACKUPS=
txn() { printf '%s\n' "$*" >> "$TXN"; }
kill_point() {  # crash tests only: die here, as SIGKILL would
    if [ "${LLMCRATE_TEST_KILL_AT:-}" = "$1" ]; then kill -KILL $$; fi
}
backup() {  # keep a copy of a file we are about to replace, restored on rollback
    if [ -e "$1" ]; then
        txn "backup $1 1"
        cp -p "$1" "$1.llmcrate-bak.$STAMP.tmp"
        mv "$1.llmcrate-bak.$STAMP.tmp" "$1.llmcrate-bak.$STAMP"
    else
        txn "backup $1 0"
    fi
    BACKUPS="$BACKUPS $1"
}
rollback() {
    status=$?
    [ "$DONE" = 1 ] && return 0
    trap - EXIT INT TERM
    say "==> Install failed; rolling back" >&2
    if [ -f "$JOURNAL" ]; then bundle_py runtime.bundle rollback --journal "$JOURNAL" || true; fi
    if [ -d "$OLD" ]; then
        rm -rf "$LIB"
        mv "$OLD" "$LIB"
    elif [ "$SWAPPED" = 1 ] && [ "$HAD_LIB" = 0 ]; then
        rm -rf "$LIB"
    fi
    for f in $BACKUPS; do
        if [ -e "$f.llmcrate-bak.$STAMP" ]; then mv "$f.llmcrate-bak.$STAMP" "$f"; else rm -f "$f"; fi
    done
    if [ "$SYSTEMD" = yes ]; then
        systemctl daemon-reload 2>/dev/null || true
        if [ -d "$LIB" ]; then systemctl restart llmcrate.service 2>/dev/null || true; fi
    fi
    rm -rf "$STAGE" "$JOURNAL" "$TXN"
    say "Rolled back; the previous installation (if any) is unchanged." >&2
    exit "$([ "$status" = 0 ] && echo 1 || echo "$status")"
}
trap rollback EXIT
trap 'exit 130' INT TERM

if [ -d "$LIB" ]; then HAD_LIB=1; else HAD_LIB=0; fi
txn "had_lib $HAD_LIB"
txn "systemd $SYSTEMD"
mkdir -p "$PREFIX/bin" "$ETC_DIR" "$MODELS_DIR"
rm -rf "$STAGE"
mkdir -p "$STAGE"

say "==> Installing llmcrate and its Python packages (offline)"
PIP_WHEEL=$(bundle_py runtime.bundle pip-wheel "$BUNDLE_DIR" --python "$PY_VERSION")
PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_ROOT_USER_ACTION=ignore PYTHONNOUSERSITE=1 \
    "$PYTHON" "$BUNDLE_DIR/wheels/$PIP_WHEEL/pip" install --no-index --find-links "$BUNDLE_DIR/wheels" \
    --target "$STAGE/python" --no-cache-dir --disable-pip-version-check --no-warn-script-location --no-warn-conflicts --quiet \
    --no-compile "$LLMCRATE_WHEEL"
# Bytecode now, on every core (the service cannot write it later: ProtectSystem=strict).
# A file that does not compile (a template, a test for another Python) is pip's usual warning, not an error.
"$PYTHON" -m compileall -q -j 0 "$STAGE/python" >/dev/null 2>&1 || true
cp -R "$BUNDLE_DIR/runtimes" "$STAGE/runtimes"
cp "$BUNDLE_DIR/start.sh" "$BUNDLE_DIR/uninstall.sh" "$BUNDLE_DIR/bundle.json" "$STAGE/"
cp -R "$BUNDLE_DIR/LICENSES" "$STAGE/LICENSES"
chmod 755 "$STAGE/start.sh" "$STAGE/uninstall.sh"
bundle_py runtime.bundle write-conf "$STAGE/install.conf" PYTHON="$PYTHON" PREFIX="$PREFIX" LIB="$LIB" \
    ETC_DIR="$ETC_DIR" MODELS_DIR="$MODELS_DIR" UNIT_DIR="$UNIT_DIR" SYSTEMD="$SYSTEMD" HOST="$HOST" RUNTIME="$RUNTIME" \
    BUNDLE={{ top | shquote }}

say "==> Activating"
kill_point staged
SWAPPED=1
if [ -d "$LIB" ]; then mv "$LIB" "$OLD"; fi
kill_point between-renames
mv "$STAGE" "$LIB"

backup "$PREFIX/bin/llmcrate"
txn "tmp $PREFIX/bin/llmcrate.tmp.$STAMP"
cat > "$PREFIX/bin/llmcrate.tmp.$STAMP" <<EOF
#!/bin/sh
# llmcrate command, installed by {{ top }}/install.sh
. "$LIB/install.conf"
: "\${OLLAMA_HOST:=$HOST}"
: "\${OLLAMA_MODELS:=\$MODELS_DIR}"
export OLLAMA_HOST OLLAMA_MODELS
PYTHONPATH="\$LIB/python" exec "\$PYTHON" -s -c 'from runtime.cli import main; main(prog_name="llmcrate")' "\$@"
EOF
chmod 755 "$PREFIX/bin/llmcrate.tmp.$STAMP"
mv "$PREFIX/bin/llmcrate.tmp.$STAMP" "$PREFIX/bin/llmcrate"

backup "$ETC_DIR/llmcrate.env"
txn "tmp $ETC_DIR/llmcrate.env.tmp.$STAMP"
{
    printf '# llmcrate settings, read by systemd (EnvironmentFile) and start.sh\n'
    printf 'OLLAMA_HOST=%s\n' "$HOST"
    printf 'OLLAMA_MODELS=%s\n' "$MODELS_DIR"
    printf 'LLMCRATE_RUNTIME=%s\n' "$RUNTIME"
    cat "$BUNDLE_DIR/llmcrate.env"
} > "$ETC_DIR/llmcrate.env.tmp.$STAMP"
if [ -f "$ETC_DIR/llmcrate.env" ] && ! cmp -s "$ETC_DIR/llmcrate.env" "$ETC_DIR/llmcrate.env.tmp.$STAMP" 2>/dev/null; then
    cp -p "$ETC_DIR/llmcrate.env" "$ETC_DIR/llmcrate.env.bak"
    say "  previous settings saved as $ETC_DIR/llmcrate.env.bak (merge your edits back if you made any)"
fi
mv "$ETC_DIR/llmcrate.env.tmp.$STAMP" "$ETC_DIR/llmcrate.env"

say "==> Registering models in $MODELS_DIR"
bundle_py runtime.bundle register "$BUNDLE_DIR/models" "$MODELS_DIR" --journal "$JOURNAL"

if [ "$SYSTEMD" = yes ]; then
    say "==> systemd service"
    if ! getent passwd llmcrate >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/llmcrate --no-create-home \
            --shell /usr/sbin/nologin --comment "llmcrate server" llmcrate
    fi
    for g in render video; do
        if getent group "$g" >/dev/null 2>&1; then usermod -a -G "$g" llmcrate; fi
    done
    chown -R llmcrate:llmcrate "$MODELS_DIR"
    backup "$UNIT_DIR/llmcrate.service"
    case $MODELS_DIR in /home/*|/root/*|/run/user/*) PROTECT_HOME=read-only ;; *) PROTECT_HOME=yes ;; esac
    bundle_py runtime.bundle subst "$BUNDLE_DIR/llmcrate.service" "$UNIT_DIR/llmcrate.service" \
        LIB="$LIB" ETC_DIR="$ETC_DIR" MODELS_DIR="$MODELS_DIR" PROTECT_HOME="$PROTECT_HOME"
    systemctl daemon-reload
    systemctl enable llmcrate.service >/dev/null 2>&1
    systemctl restart llmcrate.service
    say "==> Smoke test"
    bundle_py runtime.bundle smoke --host "$HOST" --model {{ smoke_model | shquote }} --timeout 180 \
        || { journalctl -u llmcrate.service -n 30 --no-pager 2>/dev/null || true; die "smoke test failed"; }
fi

kill_point registered
txn "done"                # the commit point: from here on a killed run is finished, not undone
DONE=1
trap - EXIT INT TERM
kill_point committed
rm -rf "$OLD" "$JOURNAL"
for f in $BACKUPS; do rm -f "$f.llmcrate-bak.$STAMP"; done
rm -f "$TXN"

say "==> Installed {{ name }} {{ version }}"
say "  command:   $PREFIX/bin/llmcrate (try: $PREFIX/bin/llmcrate list)"
say "  models:    $MODELS_DIR"
say "  settings:  $ETC_DIR/llmcrate.env"
say "  uninstall: $LIB/uninstall.sh [--purge]"
if [ "$SYSTEMD" = yes ]; then
    say "  service:   systemctl status llmcrate   (listening on $HOST)"
else
    say "No systemd service was installed. Start the server with:"
    say "  $LIB/start.sh"
    say "(it reads $ETC_DIR/llmcrate.env and listens on $HOST)"
fi

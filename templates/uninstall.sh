#!/bin/sh
# Remove what {{ top }}/install.sh put on this host. Models stay unless --purge.
set -eu
LIB=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
. "$LIB/install.conf"
PURGE=0
YES=0
while [ $# -gt 0 ]; do
    case $1 in
        --purge) PURGE=1 ;;
        --yes|-y) YES=1 ;;
        -h|--help)
            echo "Usage: $0 [--purge] [--yes]"
            echo "Remove llmcrate from $PREFIX. --purge also deletes the models in $MODELS_DIR."
            exit 0 ;;
        *) echo "uninstall.sh: unknown option '$1'" >&2; exit 1 ;;
    esac
    shift
done
if [ "$YES" != 1 ] && [ -t 0 ]; then
    printf 'Remove llmcrate from %s%s? [y/N] ' "$PREFIX" "$([ "$PURGE" = 1 ] && echo " and delete $MODELS_DIR")"
    read -r answer || answer=
    case $answer in y|Y|yes|YES) ;; *) echo "aborted" >&2; exit 1 ;; esac
fi
if [ "$SYSTEMD" = yes ] && [ -f "$UNIT_DIR/llmcrate.service" ]; then
    systemctl disable --now llmcrate.service >/dev/null 2>&1 || true
    rm -f "$UNIT_DIR/llmcrate.service"
    systemctl daemon-reload || true
fi
rm -f "$PREFIX/bin/llmcrate"
rm -f "$ETC_DIR/llmcrate.env"
rmdir "$ETC_DIR" 2>/dev/null || true
if [ "$PURGE" = 1 ]; then
    rm -rf "$MODELS_DIR"
    if getent passwd llmcrate >/dev/null 2>&1 && command -v userdel >/dev/null 2>&1; then
        userdel llmcrate 2>/dev/null || true
    fi
    echo "Removed llmcrate and its models."
else
    echo "Removed llmcrate; models kept in $MODELS_DIR (uninstall.sh --purge deletes them)."
fi
cd /
rm -rf "$LIB"

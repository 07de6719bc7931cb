#!/usr/bin/env bash
# Installs what lbsim's benchmark suite needs, by its own means:
#   - HAProxy and nginx with its stream module (Debian packages, through apt-get, as root);
#   - bench/.build/benchtool, the C backend and load generator (compiled with cc).
# Whatever cannot be installed is skipped with a note; run.py then leaves that column out.
# Usage: bash bench/setup.sh
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/.build"

note() { printf 'setup: %s\n' "$*"; }

install_packages() {
    local missing=()
    command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
    command -v nginx >/dev/null 2>&1 || missing+=(nginx)
    ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1 || missing+=(libnginx-mod-stream)
    if [ ${#missing[@]} -eq 0 ]; then
        note "haproxy and nginx (stream) already installed"
        return
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        note "cannot install ${missing[*]} (needs root and apt-get): those columns are skipped"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    local guard=/usr/sbin/policy-rc.d
    if [ ! -e "$guard" ]; then  # keep the packages' own services from starting
        printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod +x "$guard"
        trap 'rm -f /usr/sbin/policy-rc.d; trap - RETURN' RETURN
    fi
    apt-get update -q >/dev/null || note "apt-get update failed"
    for pkg in "${missing[@]}"; do
        if ! apt-get install -y -q --no-install-recommends "$pkg" >/dev/null; then
            note "could not install $pkg: its column is skipped"
        fi
    done
    note "installed: ${missing[*]}"
}

build_tool() {
    local cc="${CC:-cc}"
    if ! command -v "$cc" >/dev/null 2>&1; then
        note "no C compiler ($cc): the bench cannot run without bench/.build/benchtool"
        return 1
    fi
    mkdir -p "$build"
    "$cc" -O2 -Wall -Wextra -o "$build/benchtool" "$here"/c/*.c -lpthread -lm || return 1
    note "built $build/benchtool"
}

install_packages
build_tool

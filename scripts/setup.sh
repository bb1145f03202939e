#!/usr/bin/env bash
# Fresh Debian 12/13 (as root) → .venv with the pinned dev requirements and the Cython modules built
# in place. Idempotent: a stamp holding the requirements' hash skips the pip step when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v gcc >/dev/null || need_apt+=(gcc)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need_apt+=(python3-dev)
# the season page's browser tests (tier `browser`): Debian's chromium and its driver, no other download
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  echo "setup: apt-get install ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# nginx: the real HTTP server (Range, ETag) of the fetch tests and bench; installed, never started as a service.
# openssl: their self-signed certificate.
if [ ! -x /usr/sbin/nginx ] || ! command -v openssl >/dev/null; then
  echo "setup: apt-get install nginx openssl"
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx openssl >/dev/null; } || rc=$?
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  [ "$rc" = 0 ] || exit "$rc"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.requirements.sha256
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned requirements into .venv (torch is large: a few minutes)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/dev.txt
  echo "$want" >"$stamp"
fi
if [ -f setup.py ]; then
  .venv/bin/python setup.py -q build_ext --inplace >/dev/null
fi
echo "setup: .venv ready ($(.venv/bin/python --version))"

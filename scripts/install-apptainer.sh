#!/usr/bin/env bash
# Apptainer 1.4.5 on a fresh Debian 12 or 13, as root. Idempotent: a second run checks and exits.
#
# Apptainer is in no stable Debian release; sid's package needs glibc >= 2.38 (bookworm has 2.36).
# So: sid's apptainer + its three library dependencies + sid's glibc go into a private directory,
# and every apptainer executable gets that glibc's loader and an RPATH to it via patchelf
# (RPATH, not RUNPATH: RUNPATH would let the host's libm leak in). The host's glibc is untouched.
#
# Packages come from ../shared/debs/apptainer-1.4.5/ (checked against SHA256SUMS) when present,
# else from sid with a throwaway apt configuration. Set APPTAINER_DEBS to use another directory.
set -euo pipefail

VERSION=1.4.5
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEBS=${APPTAINER_DEBS:-$(dirname "$ROOT")/shared/debs/apptainer-$VERSION}
PRIVATE=/opt/apptainer-libs          # sid's glibc, libseccomp, libsqlite, for apptainer only
STAMP=$PRIVATE/.installed         # holds the version installed (sid may have moved past $VERSION)
CONF=/etc/apptainer/apptainer.conf
HOST_PKGS=(patchelf squashfs-tools uidmap ca-certificates debootstrap e2fsprogs squashfuse fuse2fs libcap2-bin)

log() { echo "install-apptainer: $*"; }
die() { echo "install-apptainer: ERROR: $*" >&2; exit 3; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and edits /etc/apptainer)"

# --- host packages -------------------------------------------------------------------------------
missing=()
for p in "${HOST_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    die "apt-get install ${missing[*]} failed"
fi

# --- apptainer + private libraries ---------------------------------------------------------------
fetch_debs() {  # into $1: the four .debs, from the pinned copy or from sid
  local dest=$1
  if [ -d "$DEBS" ]; then
    (cd "$DEBS" && sha256sum --quiet -c SHA256SUMS) || die "checksum mismatch in $DEBS"
    cp "$DEBS"/*.deb "$dest"/
    return
  fi
  log "no pinned debs at $DEBS: downloading apptainer and its libraries from Debian sid"
  local apt="$dest/apt"
  mkdir -p "$apt"/{lists/partial,cache/archives/partial,etc/preferences.d}
  echo "deb http://deb.debian.org/debian sid main" >"$apt/etc/sources.list"
  local opts=(-o "Dir::Etc::sourcelist=$apt/etc/sources.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::Etc::preferencesparts=$apt/etc/preferences.d" -o "Dir::State::Lists=$apt/lists"
    -o "Dir::Cache=$apt/cache" -o "Acquire::Check-Valid-Until=false" -o "Acquire::Check-Date=false"
    -o "APT::Get::List-Cleanup=false" -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" update -qq
  (cd "$dest" && apt-get "${opts[@]}" download -qq apptainer libc6 libseccomp2 libsqlite3-0)
}

installed_ok() {
  [ -f "$STAMP" ] && [ -x /usr/bin/apptainer ] &&
    [ "$(apptainer --version 2>/dev/null)" = "apptainer version $(cat "$STAMP")" ]
}

if installed_ok; then
  log "apptainer $(cat "$STAMP") already installed"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  fetch_debs "$work"
  mkdir -p "$work/x" "$PRIVATE"
  for deb in "$work"/libc6_*.deb "$work"/libseccomp2_*.deb "$work"/libsqlite3-0_*.deb; do
    dpkg-deb -x "$deb" "$work/x"
  done
  cp -a "$work"/x/usr/lib/x86_64-linux-gnu/*.so* "$PRIVATE"/
  [ -e "$CONF" ] && cp -a "$CONF" "$work/apptainer.conf.keep"
  dpkg-deb -x "$work"/apptainer_*.deb /
  [ -e "$work/apptainer.conf.keep" ] && cp -a "$work/apptainer.conf.keep" "$CONF"
  # Executables only (they have an interpreter); offsetpreload.so is preloaded into container
  # processes and must keep using whatever libc they use.
  while read -r f; do
    if patchelf --print-interpreter "$f" >/dev/null 2>&1; then
      patchelf --set-interpreter "$PRIVATE/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$PRIVATE" "$f"
    fi
  done < <(dpkg-deb -c "$work"/apptainer_*.deb | awk '$1 ~ /^-..x/ {sub(/^\./, "", $6); print $6}')
  installed=$(apptainer --version | awk '{print $3}')
  echo "$installed" >"$STAMP"
  [ "$installed" = "$VERSION" ] || log "note: sid's apptainer is $installed; this project was tested with $VERSION"
  log "installed apptainer $installed with private glibc in $PRIVATE"
fi

# --- fakeroot mappings ---------------------------------------------------------------------------
for f in /etc/subuid /etc/subgid; do
  grep -q '^root:' "$f" 2>/dev/null || echo "root:1000000:65536" >>"$f"
done

# --- machines whose bounding set lacks capabilities (these VMs: no CAP_SYS_RESOURCE) -------------
# Root's default "full" capability set then cannot be granted and every run fails; grant root
# exactly the capabilities the bounding set holds, and have root use that file-based set.
bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if [ $((16#$bnd & (1 << 24))) -eq 0 ]; then
  caps=$(capsh --decode="$bnd" | sed 's/^.*=//' | tr '[:lower:]' '[:upper:]')
  apptainer capability add --user root "$caps" 2>/dev/null ||
    die "apptainer capability add failed for: $caps"
  sed -i 's/^root default capabilities = .*/root default capabilities = file/' "$CONF"
  log "capability bounding set $bnd lacks CAP_SYS_RESOURCE: root uses a file-based capability set"
fi

# --- proof it runs: a sandbox of symlinks onto the host's /usr exercises starter + capabilities ---
sandbox=$(mktemp -d)
mkdir -p "$sandbox"/{usr,etc,proc,sys,dev,tmp,root,home,var/tmp}
ln -s usr/bin "$sandbox/bin"; ln -s usr/lib "$sandbox/lib"; ln -s usr/lib64 "$sandbox/lib64"
out=$(apptainer -s exec --containall --cleanenv --bind /usr:/usr "$sandbox" /bin/true 2>&1) ||
  { rm -rf "$sandbox"; die "apptainer cannot run a container: $out"; }
rm -rf "$sandbox"
log "ready: $(apptainer --version)"

#!/usr/bin/env bash
# Re-do the vendoring of the season page's JavaScript (app/batch/page_assets/vendor/): the exact npm
# versions below, checked against npm's published sha512, copied with their licences. The page
# inlines these files into report.html, so nothing is fetched when it is opened (no CDN).
# Needs npm (a development machine); the committed copies are what builds and tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=app/batch/page_assets/vendor
# package version sha512 (npm's dist.integrity)
packages=(
  "leaflet 1.9.4 sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA=="
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
for entry in "${packages[@]}"; do
  read -r name version integrity <<<"$entry"
  (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
  tarball="$work/$name-$version.tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  [ "$got" = "$integrity" ] || { echo "vendor-js: $name@$version integrity $got != $integrity" >&2; exit 3; }
  mkdir -p "$work/$name" && tar -xzf "$tarball" -C "$work/$name"
  case "$name" in
    leaflet)
      cp "$work/$name/package/dist/leaflet.js" "$dest/leaflet.js"
      cp "$work/$name/package/dist/leaflet.css" "$dest/leaflet.css"
      cp "$work/$name/package/LICENSE" "$dest/LICENSE.leaflet"
      ;;
  esac
  echo "$name $version $integrity" >>"$work/VERSIONS"
done
cp "$work/VERSIONS" "$dest/VERSIONS"
echo "vendor-js: $(wc -l <"$dest/VERSIONS") package(s) in $dest"

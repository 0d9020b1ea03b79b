#!/usr/bin/env bash
# Open a local HTML file (a `--timings` page) in headless Chromium, offline, with a fresh profile:
# the DOM after load on stdout, Chromium's log on stderr (page console messages are its `:CONSOLE`
# lines), and a screenshot to PNG. Used by the browser test (tests/integration/timings.rs) and
# for the README's screenshot. Exit 3 when no Chromium is found (Debian: apt-get install chromium).
#
#   bash scripts/headless.sh PAGE.html SHOT.png [WIDTHxHEIGHT]
set -euo pipefail
page="$1"
shot="$2"
size="${3:-1200x1600}"
browser="${BOOKSTORE_CHROMIUM:-}"
if [ -z "$browser" ]; then
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null; then
      browser="$(command -v "$name")"
      break
    fi
  done
fi
if [ -z "$browser" ]; then
  echo "no Chromium on PATH (Debian: apt-get install chromium; or set BOOKSTORE_CHROMIUM)" >&2
  exit 3
fi
profile="$(mktemp -d "${TMPDIR:-/tmp}/bookstore-headless.XXXXXX")"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --disable-breakpad --hide-scrollbars
  --user-data-dir="$profile" --enable-logging=stderr --v=0
  # Offline: any host name fails to resolve, so the page can only show what it carries.
  --host-resolver-rules="MAP * ~NOTFOUND"
  --window-size="${size/x/,}" --screenshot="$shot" --dump-dom)
# Chromium refuses to run as root with its sandbox on.
if [ "$(id -u)" = 0 ]; then
  flags+=(--no-sandbox)
fi
HOME="$profile" XDG_CONFIG_HOME="$profile" XDG_CACHE_HOME="$profile" \
  "$browser" "${flags[@]}" "file://$(realpath "$page")"

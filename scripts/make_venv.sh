#!/usr/bin/env bash
# Create (or update) the project virtual environment with Python 3.10 and install
# the project with its Lava and dev extras. Called by `make venv`.
set -euo pipefail
venv="${1:-.venv}"
py310="$(scripts/find_python310.sh)"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv with $py310"
  "$py310" -m venv "$venv"
fi
# Some machines list local package mirrors that do not exist; pip warns about each one.
quiet_pip() {
  "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
echo "installing neurall-neuro[lava,dev] into $venv (first run downloads ~5 GB: torch 2.3.1, lava-dl)"
quiet_pip install --quiet --disable-pip-version-check -e ".[lava,dev]"
touch "$venv/.installed"

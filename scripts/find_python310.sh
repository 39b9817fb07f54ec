#!/usr/bin/env bash
# Print the path of a working Python 3.10 interpreter, or explain what to install.
# Order: $PYTHON310 (explicit override), python3.10 on PATH, pyenv's 3.10.x builds.
set -u
candidates=()
[ -n "${PYTHON310:-}" ] && candidates+=("$PYTHON310")
command -v python3.10 >/dev/null 2>&1 && candidates+=("$(command -v python3.10)")
pyenv_root="${PYENV_ROOT:-}"
if [ -z "$pyenv_root" ] && command -v pyenv >/dev/null 2>&1; then pyenv_root="$(pyenv root 2>/dev/null)"; fi
[ -z "$pyenv_root" ] && pyenv_root="$HOME/.pyenv"
for p in "$pyenv_root"/versions/3.10*/bin/python3.10; do [ -x "$p" ] && candidates+=("$p"); done
for p in /usr/bin/python3.10 /usr/local/bin/python3.10; do [ -x "$p" ] && candidates+=("$p"); done
for p in "${candidates[@]}"; do
  # pyenv shims exist on PATH even when the version is not active: only accept one that runs.
  if "$p" -c 'import sys, venv; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1; then
    echo "$p"; exit 0
  fi
done
echo "error: Python 3.10 not found. The full environment needs Python 3.10 (lava-nc 0.10 / lava-dl 0.6 support only 3.10)." >&2
echo "       Install it (e.g. 'pyenv install 3.10', or your OS package python3.10 + python3.10-venv)," >&2
echo "       or point PYTHON310=/path/to/python3.10 at one." >&2
exit 1

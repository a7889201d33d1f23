# Shared set-up for tools/gizdev and tools/test (sourced, not run): a project virtualenv in .venv with the
# requested extras, rebuilt only when pyproject.toml changes. Works on a fresh Debian / Raspberry Pi OS.

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root for: $*" >&2; return 1; fi
}

apt_install() {
    # Installs the Debian packages that are missing; runs apt-get update once per call.
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "gizdev: installing Debian packages: ${missing[*]}" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_python() {
    PYTHON=${PYTHON:-python3}
    if ! command -v "$PYTHON" >/dev/null; then apt_install python3; fi
    if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        echo "gizdev needs Python >= 3.11 ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
        exit 1
    fi
    # Debian splits venv/ensurepip into python3-venv.
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then apt_install python3-venv; fi
}

ensure_venv() {
    # ensure_venv EXTRAS  e.g. ensure_venv dev
    local extras=$1 root stamp want
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    VENV="$root/.venv"
    stamp="$VENV/.gizdev-installed"
    want="$extras $(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
    # "dev" installs every extra, so it satisfies any request.
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] &&
        grep -qxF -e "$want" -e "dev ${want#* }" "$stamp"; then return 0; fi
    ensure_python
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    echo "gizdev: installing the project into $VENV (extras: $extras)" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$root[$extras]"
    echo "$want" >>"$stamp"
}

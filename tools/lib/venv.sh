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
    local extras=$1 root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    VENV="$root/.venv"
    _venv_ready "$extras" "$root" && return 0
    # Two commands started at once (a sim and a probe) must not install over each other.
    exec 9>"$root/.venv.lock"
    flock 9
    if ! _venv_ready "$extras" "$root"; then _venv_install "$extras" "$root"; fi
    flock -u 9
    exec 9>&-
}

_venv_want() {
    echo "$1 $(sha256sum "$2/pyproject.toml" | cut -d' ' -f1)"
}

_venv_ready() {
    # "dev" installs every extra, so it satisfies any request.
    local want stamp="$VENV/.gizdev-installed"
    want=$(_venv_want "$1" "$2")
    [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && grep -qxF -e "$want" -e "dev ${want#* }" "$stamp"
}

_venv_install() {
    local extras=$1 root=$2 log
    ensure_python
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    echo "gizdev: installing the project into $VENV (extras: $extras); this takes a minute the first time" >&2
    log="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip &&
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$root[$extras]"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "gizdev: installation failed (log above, also in $log)" >&2
        exit 1
    fi
    _venv_want "$extras" "$root" >>"$VENV/.gizdev-installed"
}

ensure_ha_venv() {
    # Home Assistant's own Python environment in .venv-ha, for the tests that hand our MQTT discovery configs to HA's
    # platform schemas and template engine (tests/bridge/ha_check.py). pip picks the newest Home Assistant that this
    # Python runs (2024.3.3 on Python 3.11); the MQTT integration's own requirements come from its manifest.
    local root stamp
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    HA_VENV="$root/.venv-ha"
    stamp="$HA_VENV/.gizdev-installed"
    [ -x "$HA_VENV/bin/python" ] && [ -f "$stamp" ] && return 0
    ensure_python
    echo "gizdev: installing Home Assistant into $HA_VENV for the discovery tests; this takes a few minutes once" >&2
    rm -rf "$HA_VENV"
    "$PYTHON" -m venv "$HA_VENV"
    if ! { "$HA_VENV/bin/python" -m pip install -q --disable-pip-version-check homeassistant &&
        "$HA_VENV/bin/python" -m pip install -q --disable-pip-version-check $("$HA_VENV/bin/python" -c '
import json, pathlib, homeassistant.components.mqtt as mqtt
print(" ".join(json.loads((pathlib.Path(mqtt.__file__).parent / "manifest.json").read_text())["requirements"]))'); } \
        >"$root/.venv-ha.log" 2>&1; then
        cat "$root/.venv-ha.log" >&2
        echo "gizdev: installing Home Assistant failed (log above, also in $root/.venv-ha.log)" >&2
        exit 1
    fi
    "$HA_VENV/bin/python" -c 'import homeassistant.const as c; print(c.__version__)' >"$stamp"
}

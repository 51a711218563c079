#!/bin/sh
# Install or upgrade gshp-monitor on a Debian/Ubuntu host, as root:
#   sudo deploy/install.sh                 the service user, /opt/gshp/.venv, /etc/gshp, /var/lib/gshp, units
#   sudo deploy/install.sh --no-enable     the same without enabling gshp.service
#   deploy/install.sh --prefix DIR         everything under DIR (a staging tree; nothing is enabled)
# Options: --user NAME (default gshp), --source DIR (the package to install; default this checkout).
# Running it again upgrades the package in the venv and leaves the config, the environment file and the
# state directory as they are (the stores migrate themselves at the next start).
set -eu

prefix="" user="gshp" enable=1
source_dir=$(cd "$(dirname "$0")/.." && pwd)
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$(mkdir -p "$2" && cd "$2" && pwd); enable=0; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    --source) source_dir="$2"; shift 2 ;;
    --no-enable) enable=0; shift ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (it creates a user and sets owners)" >&2; exit 2; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: gshp-monitor needs Python 3.11 or newer" >&2; exit 2; }
python3 -c 'import ensurepip, venv' 2>/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }

opt="$prefix/opt/gshp" etc="$prefix/etc/gshp" state="$prefix/var/lib/gshp" units="$prefix/etc/systemd/system"

# the service user: a system account without a shell, in dialout for RS-485 adapters
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /var/lib/gshp --no-create-home --shell /usr/sbin/nologin "$user"
  echo "created user $user"
fi
getent group dialout >/dev/null && usermod -a -G dialout "$user"

# the package in its own venv; an existing venv is upgraded in place
[ -x "$opt/.venv/bin/python" ] || python3 -m venv "$opt/.venv"
"$opt/.venv/bin/pip" install -q --disable-pip-version-check --upgrade "$source_dir"
echo "installed $("$opt/.venv/bin/gshp" --version) into $opt/.venv"

# the compiled rules engine (mypyc, about 2× faster backtests) when a C compiler and Python's headers are here
if command -v gcc >/dev/null && "$opt/.venv/bin/python" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(
    os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  "$opt/.venv/bin/pip" install -q --disable-pip-version-check "$source_dir[compiled]" &&
    (cd / && GSHP_ENGINE=python "$opt/.venv/bin/python" -m rules.build_engine) ||  # the installed package, not ./rules
    echo "the compiled rules engine was not built: the rules run in pure Python (backtests about 2× slower)"
else
  echo "no C compiler (gcc, python3-dev): the rules run in pure Python (backtests about 2× slower)"
fi

# config and secrets: written once, never overwritten
install -d -m 0750 -o root -g "$user" "$etc"
if [ ! -e "$etc/gshp.yaml" ]; then  # the minimal example, its state in the unit's StateDirectory
  sed 's|^state_dir:.*|state_dir: /var/lib/gshp|' "$source_dir/deploy/examples/minimal.yaml" > "$etc/gshp.yaml"
  chown "root:$user" "$etc/gshp.yaml"
  chmod 0640 "$etc/gshp.yaml"
fi
[ -e "$etc/gshp.env" ] || install -m 0600 -o root -g root "$source_dir/deploy/systemd/gshp.env.example" "$etc/gshp.env"

# the state directory: the service user's alone
install -d -m 0700 -o "$user" -g "$user" "$state"
chmod 0700 "$state"

install -d -m 0755 "$units"
for unit in "$source_dir"/deploy/systemd/*.service; do
  install -m 0644 "$unit" "$units/$(basename "$unit")"
done

if [ "$enable" = 1 ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable gshp.service
  echo "enabled gshp.service: edit $etc/gshp.yaml and $etc/gshp.env, then: systemctl start gshp"
else
  echo "installed under ${prefix:-/}: edit $etc/gshp.yaml and $etc/gshp.env;" \
       "check with $opt/.venv/bin/gshp check-config $etc/gshp.yaml"
fi

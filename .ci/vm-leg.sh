#!/bin/sh
# Run one qemu leg of the kernel matrix (default bookworm-6.1-v2, the v2 path
# this hybrid machine cannot test directly) and keep its JSON report.
# Called by .ci/run; the Debian kernel stays cached in ~/.cache/isocheck/vm
# across runs, so only the first run downloads it.
#
#   .ci/vm-leg.sh [LEG] [REPORT_DIR]
set -eu
leg=${1:-bookworm-6.1-v2}
out=${2:-target/isocheck-reports}
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
missing=""
need qemu-system-x86_64 || missing="$missing qemu-system-x86"
[ -x /bin/busybox ] || need busybox || missing="$missing busybox-static"
need dpkg-deb || missing="$missing dpkg"
need xz || missing="$missing xz-utils"
[ -x /sbin/depmod ] || need depmod || missing="$missing kmod"
if [ -n "$missing" ]; then
  apt-get install -y $missing
fi

cargo build -p isocheck-harness --bin isocheck
cargo build -p isocheck-probe
bin=target/x86_64-unknown-linux-gnu/debug
mkdir -p "$out"
start=$(date +%s)
"$bin/isocheck" vm run "$leg" --json "$out/$leg.json"
echo "vm-leg: $leg took $(( $(date +%s) - start ))s; report in $out/$leg.json"

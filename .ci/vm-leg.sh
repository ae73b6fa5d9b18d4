#!/bin/sh
# One qemu leg of the kernel matrix, for CI: by default bookworm-6.1-v2, the
# cgroup v2 path this hybrid machine cannot test directly. .ci/run calls it.
#
#   .ci/vm-leg.sh [LEG] [REPORT_DIR]
#
# Environment:
#   ISOCHECK_VM_ACCEL  tcg (the default here) or kvm. Left unset by the
#                      caller, it is set to tcg: this machine's /dev/kvm
#                      (kvm_pvm) hangs stock kernels, and probing it costs a
#                      20 s boot (the runner then remembers the failure in
#                      ~/.cache/isocheck/vm/kvm-unusable). A runner whose KVM
#                      is known good sets kvm.
#   ISOCHECK_VM_ONLY   comma-separated scenario ids instead of the whole
#                      suite (the four resource guarantees are always added).
#   ISOCHECK_VM_TIMEOUT  guest deadline in seconds (default 420).
#
# Figures (this machine, TCG, debug build): boot ~5 s, the whole suite of
# 30 scenarios 50-75 s, the leg ~1-1.5 min after the first kernel download
# (~55 MB, cached in ~/.cache/isocheck/vm across runs). The whole suite fits
# CI's ~8 minutes many times over, so it runs whole.
#
# Exit status: non-zero when the leg did not boot or report, when any
# scenario failed, when the guest was not in the leg's cgroup mode, or when
# one of the resource guarantees was not a pass (unsupported counts as a
# failure here: on this leg every controller must work).
set -eu
leg=${1:-bookworm-6.1-v2}
out=${2:-target/isocheck-reports}
cd "$(dirname "$0")/.."

resource_ids="memory-oom-kill,pids-fork-bomb,cpu-quota-throttle,cpuset-pinning"
: "${ISOCHECK_VM_ACCEL:=tcg}"
export ISOCHECK_VM_ACCEL
timeout_secs=${ISOCHECK_VM_TIMEOUT:-420}

need() { command -v "$1" >/dev/null 2>&1; }
missing=""
need qemu-system-x86_64 || missing="$missing qemu-system-x86"
need dpkg-deb || missing="$missing dpkg"
need apt-get || missing="$missing apt"
need xz || missing="$missing xz-utils"
need zstd || missing="$missing zstd"
need ldd || missing="$missing libc-bin"
[ -x /sbin/depmod ] || need depmod || missing="$missing kmod"
# The guest's NAT scenarios run the host's nft (copied in with its libraries).
[ -x /usr/sbin/nft ] || need nft || missing="$missing nftables"
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || missing="$missing debian-archive-keyring"
if [ -n "$missing" ]; then
  echo "vm-leg: installing$missing"
  apt-get update -q
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi

cargo build -q -p isocheck-harness --bin isocheck
cargo build -q -p isocheck-probe
bin=target/x86_64-unknown-linux-gnu/debug

only=""
if [ -n "${ISOCHECK_VM_ONLY:-}" ]; then
  only="$ISOCHECK_VM_ONLY,$resource_ids"
fi

mkdir -p "$out"
report="$out/$leg.json"
rm -f "$report"
start=$(date +%s)
status=0
# shellcheck disable=SC2086 # $only is empty or "--only LIST"
"$bin/isocheck" vm run "$leg" --json "$report" --timeout "$timeout_secs" \
  ${only:+--only "$only"} || status=$?
took=$(( $(date +%s) - start ))
echo "vm-leg: $leg took ${took}s under $ISOCHECK_VM_ACCEL (exit $status); report in $report"
if [ ! -s "$report" ]; then
  echo "vm-leg: $leg wrote no report; console log: ~/.cache/isocheck/vm/logs/$leg.console.log" >&2
  exit 1
fi

# The report is pretty-printed JSON: environment keys at 4 spaces, each
# result's own keys at 6. Check the mode and the resource verdicts.
want_mode=${leg##*-}
if ! grep -q "^    \"cgroup_mode\": \"$want_mode\"" "$report"; then
  echo "vm-leg: $leg: the guest did not report cgroup_mode $want_mode" >&2
  status=1
fi
verdicts=$(awk '
  /^      "id": /      { gsub(/[",]/, "", $2); id = $2 }
  /^      "verdict": / { gsub(/[",]/, "", $2); print id, $2 }
' "$report")
for id in $(echo "$resource_ids" | tr ',' ' '); do
  v=$(echo "$verdicts" | awk -v id="$id" '$1 == id { print $2 }')
  if [ "$v" != pass ]; then
    echo "vm-leg: $leg: $id is ${v:-missing}, not pass" >&2
    status=1
  fi
done
exit "$status"

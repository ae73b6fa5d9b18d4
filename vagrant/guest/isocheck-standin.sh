#!/bin/sh
# Stand-in for `isocheck run` inside a qemu guest, for testing the VM runner
# before (or without) the real binary. It accepts the same arguments
# (`run --scenarios DIR --json FILE [--only ...]`), checks one guarantee with
# busybox alone — a 32 MiB memory cgroup OOM-kills a 128 MiB allocator, and
# the same allocator survives a 512 MiB control cgroup — and writes a Report
# JSON with the guest's own kernel and cgroup mode.
set -u
json=/tmp/report.json
while [ $# -gt 0 ]; do
  case "$1" in
    --json) json=$2; shift ;;
  esac
  shift
done

if [ -f /sys/fs/cgroup/cgroup.controllers ]; then mode=v2
elif [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then mode=hybrid
else mode=v1
fi

# The allocator: the shell holds 128 MiB of command-substitution output.
ALLOC='x=$(head -c 134217728 /dev/zero | tr "\0" a); echo survived ${#x}'

# run_in_cgroup LIMIT_BYTES NAME: prints "status oom_kills"
run_in_cgroup() {
  limit=$1; name=$2
  if [ $mode = v2 ]; then
    cg=/sys/fs/cgroup/isocheck/$name
    mkdir -p $cg
    echo +memory > /sys/fs/cgroup/isocheck/cgroup.subtree_control 2>/dev/null
    echo +pids > /sys/fs/cgroup/isocheck/cgroup.subtree_control 2>/dev/null
    echo $limit > $cg/memory.max
    echo 0 > $cg/memory.swap.max 2>/dev/null
    echo 64 > $cg/pids.max
    timeout 60 sh -c "echo \$\$ > $cg/cgroup.procs; exec sh -c '$ALLOC'" >/tmp/$name.out 2>&1
    status=$?
    kills=$(sed -n 's/^oom_kill //p' $cg/memory.events)
    rmdir $cg
  else
    mem=/sys/fs/cgroup/memory/isocheck/$name
    pids=/sys/fs/cgroup/pids/isocheck/$name
    mkdir -p $mem $pids
    echo $limit > $mem/memory.limit_in_bytes
    echo 64 > $pids/pids.max
    timeout 60 sh -c "echo \$\$ > $mem/cgroup.procs; echo \$\$ > $pids/cgroup.procs; exec sh -c '$ALLOC'" >/tmp/$name.out 2>&1
    status=$?
    kills=$(sed -n 's/^oom_kill //p' $mem/memory.oom_control)
    rmdir $mem $pids
  fi
  echo "$status ${kills:-0}"
}

start=$(date +%s)
set -- $(run_in_cgroup 33554432 oom-run); run_status=$1; run_kills=$2
set -- $(run_in_cgroup 536870912 oom-control); ctl_status=$1; ctl_kills=$2
end=$(date +%s)

verdict=fail; reason="\"allocator exited $run_status with $run_kills OOM kills under a 32 MiB limit\""
if [ "$run_status" = 137 ] && [ "$run_kills" -ge 1 ]; then verdict=pass; reason=null; fi
control=false; [ "$ctl_status" = 0 ] && control=true

cpus=$(grep -c ^processor /proc/cpuinfo)
cat > "$json" <<JSON
{"environment": {"kernel": "$(uname -r)", "cgroup_mode": "$mode", "distro": "isocheck guest (busybox initramfs)", "cpus": $cpus, "isocheck_version": "standin"},
 "results": [{"id": "memory-oom-kill", "guarantee": "A container over its memory limit is OOM-killed, not the host",
   "verdict": "$verdict", "control_violation_observed": $control,
   "observed": {"run": {"exit_status": $run_status, "oom_kill": $run_kills}, "control": {"exit_status": $ctl_status, "oom_kill": $ctl_kills}},
   "expected": {"run": "killed by SIGKILL (137) and oom_kill >= 1 with memory limit 32 MiB, allocating 128 MiB", "control": "exits 0 with limit 512 MiB"},
   "duration_ms": $(( (end - start) * 1000 )), "reason": $reason}]}
JSON

#!/usr/bin/env bash
# The proof of the proof: remove each protection from the runtime's source,
# one at a time, rebuild, run the scenarios that name it, and require that at
# least one turns red. A removal whose source line no longer matches is an
# error too (the table below went stale), never a silent pass.
#
#   .ci/protection-removals.sh [NAME...]     every removal, or only these
#   .ci/protection-removals.sh --check        only check that every text still
#                                             matches its file (no build, no run)
#
# Runs in a scratch worktree of HEAD (your tree is never touched), as root.
# Each entry: name | file | exact text (first occurrence) | replacement |
# scenarios to run. Texts are literal, not regexes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

REMOVALS=$(cat <<'EOF'
pid-namespace|runtime/src/process/mod.rs|(ns.pid, CloneFlags::CLONE_NEWPID),||pid-namespace-init,pid-namespace-no-kill-host,pid-namespace-kills-strays,escape-ptrace-host,escape-host-netns
mount-namespace|runtime/src/process/mod.rs|(ns.mount, CloneFlags::CLONE_NEWNS),||mount-namespace-private
uts-namespace|runtime/src/process/mod.rs|(ns.uts, CloneFlags::CLONE_NEWUTS),||uts-hostname,uts-own-hostname
own-hostname|runtime/src/process/mod.rs|(None, true) => Some(&opts.name),|(None, true) => None,|uts-own-hostname
ipc-namespace|runtime/src/process/mod.rs|(ns.ipc, CloneFlags::CLONE_NEWIPC),||ipc-namespace
net-namespace|runtime/src/process/mod.rs|(ns.net, CloneFlags::CLONE_NEWNET),||net-none-loopback-only,net-none-loopback-only-v6
user-namespace|runtime/src/process/mod.rs|(ns.user, CloneFlags::CLONE_NEWUSER),||user-namespace-root-is-nobody
cgroup-namespace|runtime/src/process/child.rs|step(Step::UnshareCgroup, b"", sys.unshare(sys::CLONE_NEWCGROUP))?;||cgroup-namespace
time-namespace|runtime/src/process/child.rs|enter_time_namespace(sys, offsets)?;|let _ = offsets;|time-namespace
pivot-root|runtime/src/mounts/entry.rs|match plan.entry {|match RootEntry::ChrootOnly {|pivot-root-no-escape
detach-old-root|runtime/src/mounts/entry.rs|if plan.hardening.detach_old_root {|if false {|old-root-detached
rslave-root|runtime/src/mounts/mod.rs|    if plan.hardening.rslave_root {|    if false {|mount-propagation-one-way
overlay|runtime/src/rootfs/mod.rs|let image = if spec.rootfs.overlay {|let image = if false {|overlay-image-untouched
readonly-binds|runtime/src/mounts/readonly.rs|    if bind.readonly {|    if false {|readonly-bind-mount
recursive-readonly|runtime/src/mounts/readonly.rs|if plan.hardening.recursive_readonly {|if false {|readonly-bind-submounts
recursive-binds|runtime/src/mounts/readonly.rs|if plan.hardening.recursive_binds {|if false {|bind-submounts-carried
proc-sys-readonly|runtime/src/mounts/kernel_files.rs|if plan.kernel_files.proc_sys_readonly {|if false {|escape-proc-sys-write
sys-readonly|runtime/src/mounts/kernel_files.rs|let ro = plan.kernel_files.sys_readonly;|let ro = false;|sys-readonly
masked-paths|runtime/src/mounts/kernel_files.rs|if !plan.kernel_files.mask_proc_files {|if true {|escape-sysrq-and-kmsg,masked-proc-files,masked-proc-dirs,masked-sys-dirs
readonly-paths|runtime/src/mounts/kernel_files.rs|if !plan.kernel_files.readonly_paths {|if true {|readonly-proc-paths
host-cgroupfs-hidden|runtime/src/mounts/mod.rs|if plan.kernel_files.host_cgroupfs_rw {|if true {|escape-cgroup-move
clear-groups|runtime/src/process/child.rs|    if ids.clear_groups {|    if false {|supplementary-groups-cleared
capability-drop|runtime/src/process/child.rs|    c.caps.apply(sys)?;||capabilities-dropped,escape-mount-host-dev,escape-remount-readonly,escape-ptrace-host-caps,escape-host-netns-caps,exec-confined
capability-drop-exec|runtime/src/process/exec.rs|    if let Err(f) = confine(sys, confinement) {|    if let Err(f) = Ok::<(), StepFailure>(()) {|exec-confined
no-new-privs|runtime/src/process/child.rs|        step(Step::NoNewPrivs, b"", sys.set_no_new_privs())?;||no-new-privs-setuid,exec-confined
no-new-privs-exec|runtime/src/process/exec.rs|    if let Err(f) = confine(sys, confinement) {|    if let Err(f) = confine(sys, &Confinement { no_new_privs: false, ..confinement.clone() }) {|exec-confined
seccomp|runtime/src/process/mod.rs|Some(policy) => Some(crate::seccomp::compile(policy, spec.namespaces.user)?),|Some(_) => None,|seccomp-default-filter
seccomp-arch-check|runtime/src/seccomp.rs|program.splice(ARCH_CHECK_LEN..ARCH_CHECK_LEN, prefix);|program.splice(0..ARCH_CHECK_LEN, prefix);|seccomp-default-filter
device-allowlist|runtime/src/process/mod.rs|            if setup.device_allowlist {|            if false {|device-allowlist
nosuid|runtime/src/mounts/mod.rs|    if plan.hardening.nosuid {|    if false {|nosuid-writable-mounts
noexec|runtime/src/mounts/mod.rs|    if plan.hardening.noexec {|    if false {|noexec-dev-mounts
nodev|runtime/src/mounts/mod.rs|    if plan.hardening.nodev {|    if false {|nodev-writable-mounts
close-host-fds|runtime/src/process/child.rs|    if c.close_host_fds {|    if false {|escape-leaked-fd
close-host-fds-exec|runtime/src/process/exec.rs|    if let Err(f) = confine(sys, confinement) {|    if let Err(f) = confine(sys, &Confinement { close_host_fds: false, ..confinement.clone() }) {|exec-no-leaked-fd
cgroup-placement|runtime/src/process/child.rs|        step(Step::JoinCgroup, b"tasks", sys.write_all(*fd, b"0"))?;|        let _ = fd;|memory-oom-kill,pids-fork-bomb
cgroup-placement-exec|runtime/src/process/exec.rs|        step(Step::JoinCgroup, b"cgroup.procs", sys.write_all(*fd, b"0"))?;|let _ = fd;|exec-confined
group-kill|runtime/src/process/mod.rs|            cgroup.kill_all()?;||cgroup-kill-all
exec-joins-namespaces|runtime/src/process/exec.rs|            sys.setns_fd(h.pidfd, h.join_flags),|Ok::<(), nix::errno::Errno>(()),|exec-joins-namespaces
cpuset|runtime/src/cgroups/mod.rs|if let Some(set) = &limits.cpuset {|if let Some(set) = limits.cpuset.iter().take(0).next() {|cpuset-pinning
bridge-attachment|runtime/src/network/veth.rs|    let controller = if att.detached {|    let controller = if true {|net-bridge-ping-host,net-container-to-container,net-bridge-ping-host-v6,net-container-to-container-v6,net-default-route-v6
masquerade|runtime/src/network/nat.rs|            Statement::Masquerade(None),|            Statement::Accept(None),|net-nat-outside
port-forward|runtime/src/network/nat.rs|    for forward in forwards {|    for forward in forwards.iter().take(0) {|net-port-forward
memory-limit|runtime/src/cgroups/memory.rs|    fs::write(path, "memory.limit_in_bytes", &max.to_string())?;|    let _ = max;|memory-oom-kill
pids-limit|runtime/src/cgroups/mod.rs|if let Some(max) = limits.pids {|if let Some(max) = limits.pids.and(None::<u64>) {|pids-fork-bomb
cpu-quota|runtime/src/cgroups/mod.rs|if let Some(quota) = &limits.cpu {|if let Some(quota) = &limits.cpu.clone().and(None) {|cpu-quota-throttle
cpu-weight|runtime/src/cgroups/mod.rs|if let Some(weight) = limits.cpu_weight {|if let Some(weight) = limits.cpu_weight.and(None::<u64>) {|cpu-weight
io-limit|runtime/src/cgroups/mod.rs|if !limits.io_write_bps.is_empty() {|if false {|io-write-limit
nofile-limit|runtime/src/process/mod.rs|spec.limits.nofile.map(|None::<u64>.map(|rlimit-nofile
nproc-limit|runtime/src/process/mod.rs|spec.limits.nproc.map(|None::<u64>.map(|rlimit-nproc
oom-score-adj|runtime/src/rlimits.rs|set_oom_score_adj(pid, adj)?;|let _ = adj;|oom-score-adj
locked-mounts|runtime/src/process/child.rs|        sys.lock_mounts(maps)?;|        let _ = maps;|userns-locked-mounts
group-freeze|runtime/src/process/mod.rs|Some(cgroup) => Ok(cgroup.freeze()?),|Some(_) => Ok(()),|pause-freezes-all
EOF
)

# Removals only a qemu leg can show (their scenarios are unsupported on a
# hybrid host, which this script would count as survived); checked by hand
# with `isocheck vm run bookworm-6.1-v2 --only ID` (swap: the hybrid leg too):
#   memory-high  runtime/src/cgroups/memory.rs  fs::write(path, "memory.high", ...)?  -> let _ = high;          memory-high-throttles
#   oom-group    runtime/src/cgroups/memory.rs  fs::write(path, "memory.oom.group", "1")?  -> let _ = path;    oom-group-kill
#   no-swap (v2) runtime/src/cgroups/memory.rs  memory.swap.max = swap_bytes  -> "max"                         memory-no-swap
#   no-swap (v1, swap on) runtime/src/cgroups/memory.rs  memsw = max + swap_bytes  -> max + 1 TiB              memory-no-swap
#   memory-limit (v2) runtime/src/cgroups/memory.rs  fs::write(path, "memory.max", ...)?  -> let _ = max;     memory-oom-kill

if [ "${1:-}" = --check ]; then
  stale=0
  while IFS='|' read -r name file from to scenarios; do
    [ -z "$name" ] && continue
    if [ ! -f "$file" ] || ! FROM=$from perl -0ne 'exit(index($_, $ENV{FROM}) >= 0 ? 0 : 1)' "$file"; then
      echo "STALE $name: text not found in $file: $from"
      stale=$((stale + 1))
    fi
  done <<<"$REMOVALS"
  echo "$stale stale"
  [ "$stale" -eq 0 ]
  exit
fi

want=("$@")
selected() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w
  for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

scratch=$(mktemp -d /tmp/protection-removals.XXXXXX)
cleanup() {
  git -C "$repo" worktree remove --force "$scratch/tree" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT
git -C "$repo" worktree add --detach -q "$scratch/tree" HEAD
tree=$scratch/tree
# Start from this tree's build so each removal only rebuilds what it touched.
# A warm cache only saves time: a file that vanishes mid-copy (a build in
# the main tree) costs a rebuild, not the run.
[ -d "$repo/target" ] && { cp -a "$repo/target" "$tree/target" 2>/dev/null || true; }
bin=$tree/target/x86_64-unknown-linux-gnu/release/isocheck

source "$repo/.ci/leftovers.sh"
before=$(leftovers)

stale=0 survived=0 caught=0
printf '%-24s %-8s %s\n' removal result detail
while IFS='|' read -r name file from to scenarios; do
  [ -z "$name" ] && continue
  selected "$name" || continue
  git -C "$tree" checkout -q -- .
  before=$(sha256sum "$tree/$file")
  FROM=$from TO=$to perl -0pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$tree/$file"
  if [ "$before" = "$(sha256sum "$tree/$file")" ]; then
    printf '%-24s %-8s %s\n' "$name" STALE "text not found in $file: $from"
    stale=$((stale + 1))
    continue
  fi
  if ! (cd "$tree" && cargo build -q --release -p isocheck-harness -p isocheck-probe 2>"$scratch/build.log"); then
    # A removal that no longer compiles is red too, but say so.
    printf '%-24s %-8s %s\n' "$name" caught "does not build: $(grep -m1 '^error' "$scratch/build.log")"
    caught=$((caught + 1))
    continue
  fi
  out=$("$bin" run --only "$scenarios" --scenarios "$tree/scenarios" 2>&1 || true)
  red=$(printf '%s\n' "$out" | grep -E '^[a-z0-9-]+ +FAIL ' | awk '{print $1}' | paste -sd, - || true)
  # A removal can break the teardown as well: say what its run left, and
  # clear it (every owner is dead by now) so the next removal starts clean.
  leak=
  left=$(comm -13 <(echo "$before") <(leftovers) | wc -l)
  if [ "$left" -gt 0 ]; then
    "$bin" cleanup >/dev/null 2>&1 || true
    leak=" (its run left $left cgroups or temp dirs; after cleanup $(comm -13 <(echo "$before") <(leftovers) | wc -l))"
  fi
  if [ -n "$red" ]; then
    printf '%-24s %-8s %s\n' "$name" caught "red: $red$leak"
    caught=$((caught + 1))
  else
    printf '%-24s %-8s %s\n' "$name" SURVIVED "all green: $scenarios$leak"
    survived=$((survived + 1))
  fi
done <<<"$REMOVALS"
git -C "$tree" checkout -q -- .
echo "$caught caught, $survived survived, $stale stale"
[ "$survived" -eq 0 ] && [ "$stale" -eq 0 ]

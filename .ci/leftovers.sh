# Sourced by .ci/run and .ci/protection-removals.sh: what of ours is on
# this machine, as one sorted list (`comm` compares two of them, and needs
# each sorted as a whole).
leftovers() {
  {
    find /sys/fs/cgroup/*/isocheck -mindepth 1 -type d 2>/dev/null || true
    grep -o '[^ ]*isocheck[^ ]*' /proc/self/mountinfo || true
    # Temp dirs, record or not (rootfs::temp_bases: /dev/shm, /tmp).
    find /tmp /dev/shm -maxdepth 1 -name 'isocheck-*' 2>/dev/null || true
  } | sort
}

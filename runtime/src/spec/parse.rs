//! The CLI's parsers for sizes, CPU quotas and sets, device rates and binds.

use super::*;
use std::path::Path;

/// `--memory`: bytes, or a number with K, M, G or T (powers of 1024, either
/// case). Zero is refused.
pub fn parse_memory(text: &str) -> Result<u64, SpecError> {
    const HINT: &str = "is not a size (use e.g. 1048576, 512K, 64M or 1G)";
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        Some(b't' | b'T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let n: u64 = parse_decimal(digits).ok_or_else(|| parse_err("memory", text, HINT))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| parse_err("memory", text, "overflows 64 bits"))?;
    if bytes == 0 {
        return Err(parse_err("memory", text, "is zero"));
    }
    Ok(bytes)
}

/// `--cpus`: a decimal number of cpus ("0.5", "2") as a quota over a
/// 100 ms period. At most 5 decimals; at least 0.01 cpu.
pub fn parse_cpus(text: &str) -> Result<CpuQuota, SpecError> {
    const HINT: &str = "is not a number of cpus (use e.g. 0.5 or 2)";
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(parse_err("cpus", text, HINT));
    }
    if frac.len() > 5 || (text.contains('.') && frac.is_empty()) {
        return Err(parse_err("cpus", text, HINT));
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        parse_decimal(int).ok_or_else(|| parse_err("cpus", text, HINT))?
    };
    let frac_us: u64 = if frac.is_empty() {
        0
    } else {
        let f: u64 = parse_decimal(frac).ok_or_else(|| parse_err("cpus", text, HINT))?;
        f * 10u64.pow(5 - frac.len() as u32)
    };
    let quota_us = int
        .checked_mul(DEFAULT_CPU_PERIOD_US)
        .and_then(|q| q.checked_add(frac_us))
        .ok_or_else(|| parse_err("cpus", text, "is too large"))?;
    if quota_us < CPU_QUOTA_MIN {
        return Err(parse_err("cpus", text, "is below 0.01 cpu"));
    }
    Ok(CpuQuota {
        quota_us,
        period_us: DEFAULT_CPU_PERIOD_US,
    })
}

/// `--cpuset`: kernel list syntax ("0", "0-1,3"). Whether the cpus exist is
/// checked by [`ContainerSpec::validate`].
pub fn parse_cpuset(text: &str) -> Result<CpuSet, SpecError> {
    cpu_list(text).map_err(|reason| parse_err("cpuset", text, reason))?;
    Ok(CpuSet {
        cpus: text.to_string(),
        mems: None,
    })
}

/// The (major, minor) of a block device node, or why `path` is not one.
pub fn block_device_number(path: &Path) -> Result<(u64, u64), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_block_device() {
        return Err(format!("{} is not a block device", path.display()));
    }
    let rdev = meta.rdev();
    Ok((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

/// `--device-write-bps`: `DEVICE:RATE`, the rate in bytes per second with
/// an optional K, M or G (e.g. /dev/loop3:4M). Whether DEVICE is a block
/// device is checked by [`ContainerSpec::validate`].
pub fn parse_device_rate(text: &str) -> Result<DeviceRate, SpecError> {
    let (device, rate) = text
        .rsplit_once(':')
        .ok_or_else(|| parse_err("device-write-bps", text, "is not DEVICE:RATE"))?;
    if device.is_empty() {
        return Err(parse_err("device-write-bps", text, "has an empty DEVICE"));
    }
    let bytes_per_sec = parse_memory(rate).map_err(|_| {
        parse_err(
            "device-write-bps",
            text,
            "has a RATE that is not a byte count (use e.g. 1048576, 512K or 4M)",
        )
    })?;
    Ok(DeviceRate {
        device: PathBuf::from(device),
        bytes_per_sec,
    })
}

/// `--ro-bind` / `--bind`: `SRC:DST` or `SRC:DST:ro` / `SRC:DST:rw`.
pub fn parse_bind(text: &str) -> Result<BindMount, SpecError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (src, dst, readonly) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, opt] => {
            return Err(parse_err(
                "bind",
                text,
                format!("has option {opt:?}; only ro or rw"),
            ))
        }
        _ => return Err(parse_err("bind", text, "is not SRC:DST[:ro]")),
    };
    if src.is_empty() || dst.is_empty() {
        return Err(parse_err("bind", text, "has an empty SRC or DST"));
    }
    if !dst.starts_with('/') {
        return Err(parse_err("bind", text, "has a DST that is not absolute"));
    }
    Ok(BindMount {
        source: PathBuf::from(src),
        destination: PathBuf::from(dst),
        readonly,
    })
}

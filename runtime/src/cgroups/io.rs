//! io controller (blkio on v1): write bandwidth caps per block device, and
//! the bytes written read back.
//!
//! v2: io.max, one line per device `MAJ:MIN wbps=N`; io.stat
//! `MAJ:MIN rbytes=.. wbytes=.. ...`. v1: blkio.throttle.write_bps_device
//! `MAJ:MIN N`; blkio.throttle.io_service_bytes `MAJ:MIN Write N`. v1
//! throttles only I/O the cgroup issues itself (direct I/O; buffered
//! writeback is not attributed to it), v2 both.

use super::{fs, CgroupError, CgroupStats, ControllerDir, Version};
use crate::spec::{block_device_number, DeviceRate};

pub(crate) fn apply(dir: &ControllerDir, rates: &[DeviceRate]) -> Result<(), CgroupError> {
    for rate in rates {
        let (major, minor) =
            block_device_number(&rate.device).map_err(|reason| CgroupError::Device {
                device: rate.device.clone(),
                reason,
            })?;
        let bps = rate.bytes_per_sec;
        match dir.version {
            Version::V2 => fs::write(&dir.path, "io.max", &format!("{major}:{minor} wbps={bps}"))?,
            Version::V1 => fs::write(
                &dir.path,
                "blkio.throttle.write_bps_device",
                &format!("{major}:{minor} {bps}"),
            )?,
        }
    }
    Ok(())
}

pub(crate) fn stats(dir: &ControllerDir, out: &mut CgroupStats) -> Result<(), CgroupError> {
    let (file, parse): (&str, fn(&str) -> Option<u64>) = match dir.version {
        Version::V2 => ("io.stat", v2_written),
        Version::V1 => ("blkio.throttle.io_service_bytes", v1_written),
    };
    out.io_write_bytes =
        fs::read_optional(&dir.path, file)?.map(|text| text.lines().filter_map(parse).sum());
    Ok(())
}

/// `7:3 rbytes=0 wbytes=8388608 rios=0 wios=32 dbytes=0 dios=0`
fn v2_written(line: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("wbytes="))
        .and_then(|v| v.parse().ok())
}

/// `7:3 Write 8388608` (other lines: Read, Sync, Async, Discard, Total).
fn v1_written(line: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    let (_dev, op, value) = (words.next()?, words.next()?, words.next()?);
    (op == "Write").then(|| value.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_of, fake_dir};
    use super::*;
    use std::fs::read_to_string;

    /// /dev/null is a character device: no real block device is needed to
    /// see the refusal, and none is touched.
    #[test]
    fn cgroup_io_refuses_a_path_that_is_not_a_block_device() {
        let tmp = fake_dir(&[("io.max", "")]);
        let rates = [DeviceRate {
            device: "/dev/null".into(),
            bytes_per_sec: 1 << 20,
        }];
        let e = apply(&dir_of(&tmp, Version::V2), &rates).expect_err("not a block device");
        assert_eq!(e.to_string(), "/dev/null: /dev/null is not a block device");
        assert_eq!(read_to_string(tmp.path().join("io.max")).expect("read"), "");
    }

    #[test]
    fn cgroup_io_stats_sum_written_bytes_on_both_versions() {
        let v2 = fake_dir(&[(
            "io.stat",
            "7:3 rbytes=0 wbytes=8388608 rios=0 wios=32 dbytes=0 dios=0\n\
             254:0 rbytes=4096 wbytes=4096 rios=1 wios=1 dbytes=0 dios=0\n",
        )]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&v2, Version::V2), &mut s).expect("stats");
        assert_eq!(s.io_write_bytes, Some(8_392_704));
        let v1 = fake_dir(&[(
            "blkio.throttle.io_service_bytes",
            "7:3 Read 0\n7:3 Write 8388608\n7:3 Sync 8388608\n7:3 Async 0\n\
             7:3 Discard 0\n7:3 Total 8388608\nTotal 8388608\n",
        )]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&v1, Version::V1), &mut s).expect("stats");
        assert_eq!(s.io_write_bytes, Some(8_388_608));
        let none = fake_dir(&[]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&none, Version::V1), &mut s).expect("stats");
        assert_eq!(
            s.io_write_bytes, None,
            "an absent file is no count, not zero"
        );
    }
}

//! The guest's root filesystem: a cpio "newc" archive (the format the kernel
//! unpacks into its initial rootfs), written here so the host needs no cpio.
//!
//! newc layout (kernel Documentation/driver-api/early-userspace/buffer-format):
//! a 110-byte ASCII header — magic "070701" then 13 fields of 8 hex digits
//! (ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
//! rdevmajor, rdevminor, namesize incl. NUL, check) — then the name and NUL,
//! padded to a multiple of 4, then the data, padded to 4. The archive ends
//! with an entry named "TRAILER!!!".

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::kernel::{self, KernelError, KernelTree, ModulePlan};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("write archive entry {name}: {source}")]
    Write { name: String, source: io::Error },
    #[error("read module: {0}")]
    Module(#[from] KernelError),
    #[error("list the shared libraries of {program} with ldd: {detail}")]
    Ldd { program: PathBuf, detail: String },
}

/// Streams entries into a newc archive.
#[derive(Debug)]
pub struct NewcWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> NewcWriter<W> {
    pub fn new(out: W) -> Self {
        NewcWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, data: &[u8]) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let namesize = name.len() + 1;
        let header = format!(
            "070701{ino:08X}{mode:08X}{uid:08X}{gid:08X}{nlink:08X}{mtime:08X}{size:08X}\
             {dmaj:08X}{dmin:08X}{rmaj:08X}{rmin:08X}{namesize:08X}{check:08X}",
            uid = 0,
            gid = 0,
            mtime = 0,
            size = data.len(),
            dmaj = 0,
            dmin = 0,
            rmaj = 0,
            rmin = 0,
            check = 0,
        );
        debug_assert_eq!(header.len(), 110);
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0u8; 3][..4 - rem])?;
        }
        Ok(())
    }

    /// `name` is relative, without a leading slash ("bin/busybox").
    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, S_IFDIR | 0o755, 2, &[])
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, 1, target.as_bytes())
    }

    /// Write the trailer and hand back the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Everything that goes into the guest.
#[derive(Debug, Clone)]
pub struct GuestFiles<'a> {
    pub busybox: &'a Path,
    pub isocheck_bin: &'a Path,
    pub probe_bin: &'a Path,
    /// Copied flat (one level of TOML files and subdirectories).
    pub scenarios_dir: &'a Path,
    pub init_script: &'a str,
    pub kernel: &'a KernelTree,
    pub modules: &'a ModulePlan,
    /// Dynamically linked host programs the suite calls (nft): each lands in
    /// the guest's /sbin, its shared libraries at their host paths.
    pub programs: &'a [HostProgram],
}

/// A host executable and the shared libraries it loads (the ELF
/// interpreter included), as absolute host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProgram {
    pub path: PathBuf,
    pub libraries: Vec<PathBuf>,
}

impl HostProgram {
    /// Resolve `path`'s libraries with `ldd` (the dynamic loader itself, so
    /// the answer is what the loader would really open).
    pub fn resolve(path: &Path) -> Result<HostProgram, InitramfsError> {
        let ldd_err = |detail: String| InitramfsError::Ldd {
            program: path.to_owned(),
            detail,
        };
        let out = Command::new("ldd")
            .arg(path)
            .output()
            .map_err(|e| ldd_err(e.to_string()))?;
        if !out.status.success() {
            return Err(ldd_err(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        let libraries = parse_ldd(&String::from_utf8_lossy(&out.stdout)).map_err(ldd_err)?;
        Ok(HostProgram {
            path: path.to_owned(),
            libraries,
        })
    }
}

/// The absolute library paths in `ldd` output. The vDSO has no file; a
/// library ldd could not find is an error (the program would not start).
pub fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            return Err(format!("missing library: {line}"));
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; "linux-vdso.so.1 (0x...)".
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// The file name a module gets in the guest's /modules: its load position
/// first, so the init script and a human reading `ls` agree on the order.
pub fn guest_module_name(index: usize, rel: &str) -> String {
    format!("{index:02}-{}.ko", kernel::module_name(rel))
}

/// Write the guest's initramfs to `out_path`.
pub fn build(files: &GuestFiles<'_>, out_path: &Path) -> Result<(), InitramfsError> {
    let file = fs::File::create(out_path).map_err(|source| InitramfsError::Create {
        path: out_path.to_owned(),
        source,
    })?;
    let mut w = NewcWriter::new(BufWriter::new(file));
    let werr = |name: &str| {
        let name = name.to_owned();
        move |source| InitramfsError::Write { name, source }
    };
    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "out",
        "modules",
        "scenarios",
        "root",
        "etc",
        "run",
        "mnt",
    ] {
        w.dir(d).map_err(werr(d))?;
    }
    let read = |p: &Path| {
        fs::read(p).map_err(|source| InitramfsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    w.file("bin/busybox", 0o755, &read(files.busybox)?)
        .map_err(werr("bin/busybox"))?;
    // The rest of the applets are linked by `busybox --install -s` at boot.
    w.symlink("bin/sh", "busybox").map_err(werr("bin/sh"))?;
    w.file("init", 0o755, files.init_script.as_bytes())
        .map_err(werr("init"))?;
    w.file("isocheck", 0o755, &read(files.isocheck_bin)?)
        .map_err(werr("isocheck"))?;
    w.file("isocheck-probe", 0o755, &read(files.probe_bin)?)
        .map_err(werr("isocheck-probe"))?;
    w.file(
        "etc/os-release",
        0o644,
        b"PRETTY_NAME=\"isocheck guest (busybox initramfs)\"\nID=isocheck-guest\n",
    )
    .map_err(werr("etc/os-release"))?;
    for (i, rel) in files.modules.load_order.iter().enumerate() {
        let bytes = kernel::read_module(&files.kernel.modules_dir.join(rel))?;
        let name = format!("modules/{}", guest_module_name(i, rel));
        w.file(&name, 0o644, &bytes).map_err(werr(&name))?;
    }
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for program in files.programs {
        let Some(name) = program.path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let guest = format!("sbin/{name}");
        w.file(&guest, 0o755, &read(&program.path)?)
            .map_err(werr(&guest))?;
        for lib in &program.libraries {
            let guest = lib.to_string_lossy().trim_start_matches('/').to_owned();
            if !dirs.insert(guest.clone()) {
                continue;
            }
            // The kernel's unpacker creates no parent directories.
            for parent in parent_dirs(&guest) {
                if dirs.insert(parent.clone()) {
                    w.dir(&parent).map_err(werr(&parent))?;
                }
            }
            w.file(&guest, 0o755, &read(lib)?).map_err(werr(&guest))?;
        }
    }
    add_tree(&mut w, files.scenarios_dir, "scenarios")?;
    w.finish().map_err(werr("TRAILER!!!"))?;
    Ok(())
}

/// "a/b/c.so" -> ["a", "a/b"], outermost first.
fn parent_dirs(rel: &str) -> Vec<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    (1..parts.len()).map(|n| parts[..n].join("/")).collect()
}

fn add_tree<W: Write>(
    w: &mut NewcWriter<W>,
    dir: &Path,
    prefix: &str,
) -> Result<(), InitramfsError> {
    let Ok(entries) = fs::read_dir(dir) else {
        // No scenarios directory: the guest gets an empty one.
        return Ok(());
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let guest = format!("{prefix}/{name}");
        if path.is_dir() {
            w.dir(&guest).map_err(|source| InitramfsError::Write {
                name: guest.clone(),
                source,
            })?;
            add_tree(w, &path, &guest)?;
        } else if path.is_file() {
            let data = fs::read(&path).map_err(|source| InitramfsError::Read {
                path: path.clone(),
                source,
            })?;
            w.file(&guest, 0o644, &data)
                .map_err(|source| InitramfsError::Write {
                    name: guest.clone(),
                    source,
                })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn field(header: &[u8], index: usize) -> u32 {
        let start = 6 + index * 8;
        let text = std::str::from_utf8(&header[start..start + 8]).expect("ascii");
        u32::from_str_radix(text, 16).expect("hex")
    }

    #[test]
    fn header_layout_follows_newc() {
        let mut w = NewcWriter::new(Vec::new());
        w.file("init", 0o755, b"#!/bin/sh\n").expect("file");
        let bytes = w.finish().expect("finish");
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(field(&bytes, 0), 1, "ino");
        assert_eq!(field(&bytes, 1), 0o100755, "mode");
        assert_eq!(field(&bytes, 4), 1, "nlink");
        assert_eq!(field(&bytes, 6), 10, "filesize");
        assert_eq!(field(&bytes, 11), 5, "namesize counts the NUL");
        assert_eq!(&bytes[110..115], b"init\0");
        // 110 + 5 = 115, padded to 116; data 10 bytes to 126, padded to 128.
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(&bytes[128..134], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.windows(11).any(|w| w == b"TRAILER!!!\0"));
    }

    #[test]
    fn busybox_cpio_lists_and_extracts_the_archive() {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            eprintln!("skipping: no busybox");
            return;
        }
        let mut w = NewcWriter::new(Vec::new());
        w.dir("bin").expect("dir");
        w.file("bin/hello", 0o755, b"hello world").expect("file");
        w.symlink("bin/sh", "busybox").expect("symlink");
        w.file("odd", 0o644, b"abc").expect("file");
        let bytes = w.finish().expect("finish");

        let dir = tempfile::Builder::new()
            .prefix("isocheck-")
            .tempdir()
            .expect("tempdir");
        let archive = dir.path().join("a.cpio");
        fs::write(&archive, &bytes).expect("write");
        let list = Command::new(busybox)
            .args(["cpio", "-t", "-F"])
            .arg(&archive)
            .output()
            .expect("busybox cpio -t");
        assert!(list.status.success(), "{list:?}");
        let names = String::from_utf8_lossy(&list.stdout);
        assert_eq!(
            names.lines().collect::<Vec<_>>(),
            ["bin", "bin/hello", "bin/sh", "odd"]
        );

        let x = dir.path().join("x");
        fs::create_dir(&x).expect("mkdir");
        let ex = Command::new(busybox)
            .args(["cpio", "-i", "-d", "-F"])
            .arg(&archive)
            .current_dir(&x)
            .output()
            .expect("busybox cpio -i");
        assert!(ex.status.success(), "{ex:?}");
        assert_eq!(
            fs::read(x.join("bin/hello")).expect("hello"),
            b"hello world"
        );
        assert_eq!(
            fs::read_link(x.join("bin/sh")).expect("link"),
            Path::new("busybox")
        );
        assert_eq!(fs::read(x.join("odd")).expect("odd"), b"abc");
    }

    #[test]
    fn ldd_output_gives_absolute_library_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007fff)\n\
                   \tlibnftables.so.1 => /lib/x86_64-linux-gnu/libnftables.so.1 (0x00007f91)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f91)\n";
        assert_eq!(
            parse_ldd(out).expect("parsed"),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libnftables.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn parents_are_listed_outermost_first() {
        assert_eq!(
            parent_dirs("lib/x86_64-linux-gnu/libc.so.6"),
            ["lib", "lib/x86_64-linux-gnu"]
        );
        assert!(parent_dirs("init").is_empty());
    }

    #[test]
    fn module_names_carry_their_load_position() {
        assert_eq!(
            guest_module_name(3, "kernel/net/bridge/bridge.ko.xz"),
            "03-bridge.ko"
        );
    }
}

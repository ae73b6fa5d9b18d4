//! The guest kernel: a stock Debian `linux-image` package fetched with apt
//! through a private configuration (the machine's own apt sources and state
//! are never touched), unpacked into the cache, indexed with depmod, and the
//! modules a container needs resolved in load order.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Modules the suite needs, in the order they are asked for. Dependencies
/// come from modules.dep; the order here only matters where the kernel has a
/// soft dependency modules.dep does not record: libcrc32c asks the crypto API
/// for "crc32c", so crc32c_generic must already be loaded (the guest has no
/// modprobe helper to load it on demand).
pub const CONTAINER_MODULES: &[&str] = &[
    "crc32c_generic",
    "libcrc32c",
    "overlay",
    "veth",
    "bridge",
    "br_netfilter",
    "nf_conntrack",
    "nf_nat",
    "nf_tables",
    "nft_chain_nat",
    "nft_masq",
    "nft_ct",
    // DNAT (port forwarding) and `fib daddr type local` in the inet table.
    "nft_nat",
    "nft_fib_inet",
    // A block device of the run's own (io-write-limit).
    "loop",
    // Swap for the swap and memory.high guarantees: zram, whose default
    // compressor is looked up by name (a soft dependency), so loaded first.
    "lzo_rle",
    "zram",
];

/// What the 9p report share needs. 5.10 and 6.1 build these as modules;
/// 6.12 has them built in (resolution skips built-ins).
pub const SHARE_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];

const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("create cache directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{step} failed ({status}): {stderr}")]
    Command {
        step: String,
        status: String,
        stderr: String,
    },
    #[error("no linux-image-*-amd64 dependency in `apt-cache depends linux-image-amd64` for {suite}: {output}")]
    NoImagePackage { suite: String, output: String },
    #[error("no downloaded .deb for {package} in {dir}")]
    NoDeb { package: String, dir: PathBuf },
    #[error("no boot/vmlinuz-* in the unpacked package at {0}")]
    NoVmlinuz(PathBuf),
    #[error("no modules directory for {version} under {root}")]
    NoModulesDir { root: PathBuf, version: String },
    #[error("modules.dep names {module}, which is not in {dir}")]
    MissingModuleFile { module: String, dir: PathBuf },
}

/// A private apt setup for one suite: its own sources.list, state, cache and
/// (empty) parts directories, all under `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateApt {
    pub root: PathBuf,
    pub suite: String,
    pub mirror: String,
}

impl PrivateApt {
    pub fn new(root: PathBuf, suite: &str, mirror: &str) -> Self {
        PrivateApt {
            root,
            suite: suite.to_owned(),
            mirror: mirror.trim_end_matches('/').to_owned(),
        }
    }

    /// The one deb line: the suite's main component, amd64 only.
    pub fn sources_list(&self) -> String {
        format!(
            "deb [arch=amd64 signed-by={KEYRING}] {} {} main\n",
            self.mirror, self.suite
        )
    }

    fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }

    /// `-o` options that point every apt directory at `root`, so neither the
    /// machine's sources nor its package lists, cache or lock are used.
    pub fn options(&self) -> Vec<String> {
        let etc = self.etc();
        let state = self.root.join("state");
        let cache = self.root.join("cache");
        let pairs = [
            ("Dir::Etc", etc.display().to_string()),
            (
                "Dir::Etc::sourcelist",
                etc.join("sources.list").display().to_string(),
            ),
            (
                "Dir::Etc::sourceparts",
                etc.join("sources.list.d").display().to_string(),
            ),
            (
                "Dir::Etc::preferencesparts",
                etc.join("preferences.d").display().to_string(),
            ),
            ("Dir::State", state.display().to_string()),
            (
                "Dir::State::status",
                state.join("status").display().to_string(),
            ),
            ("Dir::Cache", cache.display().to_string()),
            ("APT::Architecture", "amd64".to_owned()),
            ("APT::Architectures", "amd64".to_owned()),
            // Files land in our cache as root; do not hand them to _apt.
            ("APT::Sandbox::User", "root".to_owned()),
            ("Acquire::Languages", "none".to_owned()),
            (
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled",
                "false".to_owned(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled",
                "false".to_owned(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled",
                "false".to_owned(),
            ),
        ];
        pairs
            .into_iter()
            .flat_map(|(k, v)| ["-o".to_owned(), format!("{k}={v}")])
            .collect()
    }

    /// Create the directory tree and write sources.list.
    pub fn prepare(&self) -> Result<(), KernelError> {
        let etc = self.etc();
        for dir in [
            etc.join("sources.list.d"),
            etc.join("preferences.d"),
            etc.join("apt.conf.d"),
            self.root.join("state/lists/partial"),
            self.root.join("cache/archives/partial"),
        ] {
            create_dir(&dir)?;
        }
        write(&etc.join("sources.list"), self.sources_list().as_bytes())?;
        write(&self.root.join("state/status"), b"")
    }

    fn apt(&self, program: &str, args: &[&str], cwd: &Path) -> Result<String, KernelError> {
        let mut cmd = Command::new(program);
        cmd.args(self.options()).args(args).current_dir(cwd);
        run(&mut cmd, &format!("{program} {}", args.join(" ")))
    }

    pub fn update(&self) -> Result<(), KernelError> {
        self.apt("apt-get", &["-q", "update"], &self.root).map(drop)
    }

    /// The versioned image package `linux-image-amd64` points at.
    pub fn image_package(&self) -> Result<String, KernelError> {
        let out = self.apt("apt-cache", &["depends", "linux-image-amd64"], &self.root)?;
        parse_image_dependency(&out).ok_or_else(|| KernelError::NoImagePackage {
            suite: self.suite.clone(),
            output: out,
        })
    }

    pub fn download(&self, package: &str, into: &Path) -> Result<PathBuf, KernelError> {
        self.apt("apt-get", &["-q", "download", package], into)?;
        find_deb(into, package)
    }
}

/// The packages a split kernel image depends on for its files
/// (`linux-base-…`, `linux-binary-…`, `linux-modules-…`), from its Depends
/// field; none for
/// an image package that holds them itself.
pub fn split_image_parts(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|dep| dep.split_whitespace().next())
        .filter(|name| {
            ["linux-binary-", "linux-modules-", "linux-base-"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

/// First `Depends: linux-image-…` of `apt-cache depends linux-image-amd64`.
pub fn parse_image_dependency(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|line| {
        let dep = line.trim().strip_prefix("Depends:")?.trim();
        let dep = dep.trim_start_matches('<').trim_end_matches('>');
        (dep.starts_with("linux-image-") && dep != "linux-image-amd64").then(|| dep.to_owned())
    })
}

/// The Debian mirror this machine's apt uses (first non-security `debian`
/// URI in sources.list or a deb822 `.sources` file), so guests fetch from
/// the same place; deb.debian.org if none is found.
pub fn detect_mirror(etc_apt: &Path) -> String {
    let mut texts = Vec::new();
    if let Ok(t) = fs::read_to_string(etc_apt.join("sources.list")) {
        texts.push(t);
    }
    if let Ok(entries) = fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let name = p.to_string_lossy();
            if name.ends_with(".list") || name.ends_with(".sources") {
                if let Ok(t) = fs::read_to_string(&p) {
                    texts.push(t);
                }
            }
        }
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .find(|w| {
            (w.starts_with("http://") || w.starts_with("https://"))
                && w.trim_end_matches('/').ends_with("/debian")
        })
        .map(|w| w.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_owned())
}

/// An unpacked, depmod-indexed kernel in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTree {
    /// `uname -r` of this kernel, e.g. "6.1.0-37-amd64".
    pub version: String,
    pub vmlinuz: PathBuf,
    /// `…/lib/modules/VERSION` (holds modules.dep and modules.builtin).
    pub modules_dir: PathBuf,
}

const READY_FILE: &str = "kernel-version";

/// Fetch (once) and unpack the suite's kernel under `cache_dir`. A second
/// call finds the ready marker and touches neither apt nor the network.
pub fn fetch_kernel(suite: &str, cache_dir: &Path) -> Result<KernelTree, KernelError> {
    let suite_dir = cache_dir.join("kernels").join(suite);
    let tree_dir = suite_dir.join("tree");
    if let Ok(version) = fs::read_to_string(suite_dir.join(READY_FILE)) {
        if let Ok(tree) = locate_tree(&tree_dir, version.trim()) {
            return Ok(tree);
        }
    }
    create_dir(&suite_dir)?;
    let apt = private_apt(cache_dir, suite)?;
    let package = apt.image_package()?;
    let deb = apt.download(&package, &suite_dir)?;
    // Newer kernels (Debian's 7.x) split the image package: vmlinuz, the
    // modules and System.map come in linux-binary-*, linux-modules-* and
    // linux-base-* it depends on, under usr/lib/modules/VERSION.
    let depends = run(
        Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"),
        "dpkg-deb -f Depends",
    )?;
    let mut debs = vec![deb];
    for part in split_image_parts(&depends) {
        debs.push(apt.download(&part, &suite_dir)?);
    }
    unpack_fresh(&debs, &tree_dir)?;
    normalize_split_layout(&tree_dir)?;
    let version = vmlinuz_version(&tree_dir)?;
    link_merged_usr(&tree_dir)?;
    let system_map = tree_dir.join(format!("boot/System.map-{version}"));
    // The .deb ships no modules.dep: depmod writes it (and modules.builtin.*
    // stays as shipped) so dependencies can be resolved.
    run(
        Command::new(depmod_path())
            .arg("-b")
            .arg(&tree_dir)
            .arg("-F")
            .arg(&system_map)
            .arg(&version),
        "depmod",
    )?;
    let tree = locate_tree(&tree_dir, &version)?;
    write(&suite_dir.join(READY_FILE), version.as_bytes())?;
    Ok(tree)
}

/// A private apt for `suite` under the cache, its lists fresh.
fn private_apt(cache_dir: &Path, suite: &str) -> Result<PrivateApt, KernelError> {
    let apt = PrivateApt::new(
        cache_dir.join("apt").join(suite),
        suite,
        &detect_mirror(Path::new("/etc/apt")),
    );
    apt.prepare()?;
    apt.update()?;
    Ok(apt)
}

/// `tree` emptied, then every .deb unpacked into it.
fn unpack_fresh(debs: &[PathBuf], tree: &Path) -> Result<(), KernelError> {
    if tree.exists() {
        fs::remove_dir_all(tree).map_err(|source| KernelError::Write {
            path: tree.to_owned(),
            source,
        })?;
    }
    create_dir(tree)?;
    for deb in debs {
        run(
            Command::new("dpkg-deb").arg("-x").arg(deb).arg(tree),
            "dpkg-deb -x",
        )?;
    }
    Ok(())
}

/// The suite whose busybox-static the guests' initramfs carries.
const BUSYBOX_SUITE: &str = "bookworm";

/// Fetch (once) Debian's busybox-static through the same private apt as
/// the kernels, unpacked under `cache_dir`; the path of its static binary.
/// No busybox needs to be installed on the host for a leg.
pub fn fetch_busybox(cache_dir: &Path) -> Result<PathBuf, KernelError> {
    let dir = cache_dir.join("busybox").join(BUSYBOX_SUITE);
    let tree = dir.join("tree");
    let binary = tree.join("bin/busybox");
    if dir.join(READY_FILE).is_file() && binary.is_file() {
        return Ok(binary);
    }
    create_dir(&dir)?;
    let deb = private_apt(cache_dir, BUSYBOX_SUITE)?.download("busybox-static", &dir)?;
    unpack_fresh(&[deb], &tree)?;
    if !binary.is_file() {
        return Err(KernelError::Read {
            path: binary,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "busybox-static unpacked without bin/busybox",
            ),
        });
    }
    write(&dir.join(READY_FILE), b"busybox-static")?;
    Ok(binary)
}

fn depmod_path() -> &'static str {
    ["/sbin/depmod", "/usr/sbin/depmod"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("depmod")
}

fn find_deb(dir: &Path, package: &str) -> Result<PathBuf, KernelError> {
    let prefix = format!("{package}_");
    let entries = fs::read_dir(dir).map_err(|source| KernelError::Read {
        path: dir.to_owned(),
        source,
    })?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .ok_or_else(|| KernelError::NoDeb {
            package: package.to_owned(),
            dir: dir.to_owned(),
        })
}

fn vmlinuz_version(tree: &Path) -> Result<String, KernelError> {
    let boot = tree.join("boot");
    let entries = fs::read_dir(&boot).map_err(|_| KernelError::NoVmlinuz(tree.to_owned()))?;
    entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_owned)
        })
        .next()
        .ok_or_else(|| KernelError::NoVmlinuz(tree.to_owned()))
}

/// A split 7.x kernel keeps vmlinuz and System.map in
/// usr/lib/modules/VERSION/: link them where the older packages put them
/// (boot/vmlinuz-VERSION, boot/System.map-VERSION).
fn normalize_split_layout(tree: &Path) -> Result<(), KernelError> {
    let Ok(entries) = fs::read_dir(tree.join("usr/lib/modules")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let version = entry.file_name().to_string_lossy().into_owned();
        for (name, boot_name) in [("vmlinuz", "vmlinuz"), ("System.map", "System.map")] {
            let from = entry.path().join(name);
            let to = tree.join("boot").join(format!("{boot_name}-{version}"));
            if from.is_file() && !to.exists() {
                create_dir(&tree.join("boot"))?;
                std::os::unix::fs::symlink(&from, &to)
                    .map_err(|source| KernelError::Write { path: to, source })?;
            }
        }
    }
    Ok(())
}

/// Trixie ships modules under usr/lib/modules; depmod -b looks in lib/.
fn link_merged_usr(tree: &Path) -> Result<(), KernelError> {
    let lib = tree.join("lib");
    if !lib.exists() && tree.join("usr/lib/modules").is_dir() {
        std::os::unix::fs::symlink("usr/lib", &lib)
            .map_err(|source| KernelError::Write { path: lib, source })?;
    }
    Ok(())
}

fn locate_tree(tree: &Path, version: &str) -> Result<KernelTree, KernelError> {
    let vmlinuz = tree.join(format!("boot/vmlinuz-{version}"));
    if !vmlinuz.is_file() {
        return Err(KernelError::NoVmlinuz(tree.to_owned()));
    }
    let modules_dir = tree.join("lib/modules").join(version);
    if !modules_dir.join("modules.dep").is_file() {
        return Err(KernelError::NoModulesDir {
            root: tree.to_owned(),
            version: version.to_owned(),
        });
    }
    Ok(KernelTree {
        version: version.to_owned(),
        vmlinuz,
        modules_dir,
    })
}

/// `kernel/net/9p/9pnet_virtio.ko.xz` → `9pnet_virtio` (dashes folded to
/// underscores, as the kernel does).
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// The outcome of resolving wanted modules against modules.dep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulePlan {
    /// Relative paths (as in modules.dep), each after its dependencies.
    pub load_order: Vec<String>,
    /// Wanted names the kernel has built in: nothing to load.
    pub builtin: Vec<String>,
    /// Wanted names this kernel has neither as module nor built in.
    pub missing: Vec<String>,
}

/// Resolve `wanted` into a load order: each module's dependencies (from its
/// modules.dep line, themselves resolved first) before it, no repeats, the
/// wanted order kept otherwise.
pub fn resolve_modules(modules_dep: &str, modules_builtin: &str, wanted: &[&str]) -> ModulePlan {
    let deps: Vec<(String, String, Vec<String>)> = modules_dep
        .lines()
        .filter_map(|line| {
            let (path, rest) = line.split_once(':')?;
            let path = path.trim().to_owned();
            let list = rest.split_whitespace().map(str::to_owned).collect();
            Some((module_name(&path), path, list))
        })
        .collect();
    let builtin: HashSet<String> = modules_builtin
        .lines()
        .map(|l| module_name(l.trim()))
        .collect();

    let mut plan = ModulePlan::default();
    let mut placed = HashSet::new();
    fn place(
        path: &str,
        deps: &[(String, String, Vec<String>)],
        placed: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) {
        if !placed.insert(path.to_owned()) {
            return;
        }
        if let Some((_, _, list)) = deps.iter().find(|(_, p, _)| p == path) {
            // A dependency's line lists its own dependencies; recursing gives
            // a topological order even if the listed order were arbitrary.
            for dep in list.iter().rev() {
                place(dep, deps, placed, order);
            }
        }
        order.push(path.to_owned());
    }
    for name in wanted {
        let name = name.replace('-', "_");
        match deps.iter().find(|(n, _, _)| *n == name) {
            Some((_, path, _)) => place(path, &deps, &mut placed, &mut plan.load_order),
            None if builtin.contains(&name) => plan.builtin.push(name),
            None => plan.missing.push(name),
        }
    }
    plan
}

/// Resolve [`CONTAINER_MODULES`] and [`SHARE_MODULES`] for an unpacked kernel.
pub fn plan_for(tree: &KernelTree) -> Result<ModulePlan, KernelError> {
    let read = |name: &str| {
        let path = tree.modules_dir.join(name);
        fs::read_to_string(&path).map_err(|source| KernelError::Read { path, source })
    };
    let dep = read("modules.dep")?;
    let builtin = read("modules.builtin").unwrap_or_default();
    let wanted: Vec<&str> = SHARE_MODULES
        .iter()
        .chain(CONTAINER_MODULES)
        .copied()
        .collect();
    let plan = resolve_modules(&dep, &builtin, &wanted);
    for rel in &plan.load_order {
        if !tree.modules_dir.join(rel).is_file() {
            return Err(KernelError::MissingModuleFile {
                module: rel.clone(),
                dir: tree.modules_dir.clone(),
            });
        }
    }
    Ok(plan)
}

/// The module's bytes, uncompressed: busybox insmod in the guest takes a
/// plain .ko, and decompressing here keeps the guest side simple.
pub fn read_module(path: &Path) -> Result<Vec<u8>, KernelError> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => fs::read(path).map_err(|source| KernelError::Read {
            path: path.to_owned(),
            source,
        }),
        Some(tool) => {
            let out = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .output()
                .map_err(|source| KernelError::Spawn {
                    program: tool.to_owned(),
                    source,
                })?;
            if !out.status.success() {
                return Err(KernelError::Command {
                    step: format!("{tool} -dc {}", path.display()),
                    status: out.status.to_string(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
            Ok(out.stdout)
        }
    }
}

fn run(cmd: &mut Command, step: &str) -> Result<String, KernelError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .map_err(|source| KernelError::Spawn { program, source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        return Err(KernelError::Command {
            step: step.to_owned(),
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn create_dir(path: &Path) -> Result<(), KernelError> {
    fs::create_dir_all(path).map_err(|source| KernelError::CreateDir {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), KernelError> {
    fs::write(path, bytes).map_err(|source| KernelError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_apt_points_every_directory_at_its_root() {
        let apt = PrivateApt::new(
            PathBuf::from("/c/apt/bookworm"),
            "bookworm",
            "http://m/debian/",
        );
        assert_eq!(
            apt.sources_list(),
            "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://m/debian bookworm main\n"
        );
        let opts = apt.options();
        let values: Vec<&str> = opts.iter().skip(1).step_by(2).map(String::as_str).collect();
        assert!(opts.iter().step_by(2).all(|o| o == "-o"));
        for expected in [
            "Dir::Etc=/c/apt/bookworm/etc",
            "Dir::Etc::sourcelist=/c/apt/bookworm/etc/sources.list",
            "Dir::Etc::sourceparts=/c/apt/bookworm/etc/sources.list.d",
            "Dir::State=/c/apt/bookworm/state",
            "Dir::State::status=/c/apt/bookworm/state/status",
            "Dir::Cache=/c/apt/bookworm/cache",
        ] {
            assert!(
                values.contains(&expected),
                "missing {expected} in {values:?}"
            );
        }
        // Nothing may point into the machine's own apt directories.
        assert!(values
            .iter()
            .all(|v| !v.contains("/etc/apt") && !v.contains("/var/lib/apt")));
    }

    #[test]
    fn prepare_writes_sources_and_empty_parts() {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-")
            .tempdir()
            .expect("tempdir");
        let apt = PrivateApt::new(dir.path().join("apt"), "trixie", DEFAULT_MIRROR);
        apt.prepare().expect("prepare");
        let sources =
            fs::read_to_string(dir.path().join("apt/etc/sources.list")).expect("sources.list");
        assert!(sources.contains(" trixie main"), "{sources}");
        assert!(dir.path().join("apt/state/lists/partial").is_dir());
        assert!(dir.path().join("apt/cache/archives/partial").is_dir());
        assert_eq!(
            fs::read_dir(dir.path().join("apt/etc/sources.list.d"))
                .expect("parts")
                .count(),
            0
        );
    }

    #[test]
    fn mirror_is_read_from_deb822_sources_skipping_security() {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("sources.list.d")).expect("mkdir");
        fs::write(
            dir.path().join("sources.list.d/debian.sources"),
            "Types: deb\n# http://snapshot.debian.org/archive/debian/2025\n\
             URIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n\
             Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n",
        )
        .expect("write");
        assert_eq!(detect_mirror(dir.path()), "http://mirror.example/debian");
        let empty = tempfile::Builder::new()
            .prefix("isocheck-")
            .tempdir()
            .expect("tempdir");
        assert_eq!(detect_mirror(empty.path()), DEFAULT_MIRROR);
    }

    #[test]
    fn image_dependency_is_parsed_from_apt_cache() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-37-amd64\n";
        assert_eq!(
            parse_image_dependency(out).as_deref(),
            Some("linux-image-6.1.0-37-amd64")
        );
        let trixie = "linux-image-amd64\n  Depends: <linux-image-6.12.48+deb13-amd64>\n";
        assert_eq!(
            parse_image_dependency(trixie).as_deref(),
            Some("linux-image-6.12.48+deb13-amd64")
        );
        assert_eq!(parse_image_dependency("linux-image-amd64\n"), None);
    }

    const SAMPLE_DEP: &str = "\
kernel/fs/overlayfs/overlay.ko:
kernel/crypto/crc32c_generic.ko:
kernel/lib/libcrc32c.ko:
kernel/net/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko
kernel/fs/9p/9p-fs.ko: kernel/net/9p/9pnet.ko
kernel/net/9p/9pnet.ko:
kernel/fs/fscache/fscache.ko:
kernel/net/netfilter/nf_conntrack.ko: kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko:
kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko:
kernel/net/netfilter/nf_nat.ko: kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz
kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz
kernel/net/802/stp.ko.xz: kernel/net/llc/llc.ko.xz
kernel/net/llc/llc.ko.xz:
";

    #[test]
    fn modules_load_after_their_dependencies() {
        let plan = resolve_modules(
            SAMPLE_DEP,
            "kernel/drivers/virtio/virtio_pci.ko\n",
            &[
                "crc32c_generic",
                "virtio_pci",
                "nf_nat",
                "br_netfilter",
                "overlay",
                "nft_ct",
            ],
        );
        assert_eq!(
            plan.load_order,
            [
                "kernel/crypto/crc32c_generic.ko",
                "kernel/lib/libcrc32c.ko",
                "kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko",
                "kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko",
                "kernel/net/netfilter/nf_conntrack.ko",
                "kernel/net/netfilter/nf_nat.ko",
                "kernel/net/llc/llc.ko.xz",
                "kernel/net/802/stp.ko.xz",
                "kernel/net/bridge/bridge.ko.xz",
                "kernel/net/bridge/br_netfilter.ko.xz",
                "kernel/fs/overlayfs/overlay.ko",
            ]
        );
        assert_eq!(plan.builtin, ["virtio_pci"]);
        assert_eq!(plan.missing, ["nft_ct"]);
    }

    #[test]
    fn every_module_appears_once_and_after_its_deps() {
        let plan = resolve_modules(SAMPLE_DEP, "", &["nf_nat", "nf_conntrack", "libcrc32c"]);
        let mut seen = HashSet::new();
        for m in &plan.load_order {
            assert!(seen.insert(m.clone()), "{m} twice");
        }
        let pos = |m: &str| plan.load_order.iter().position(|x| x == m).expect(m);
        assert!(pos("kernel/lib/libcrc32c.ko") < pos("kernel/net/netfilter/nf_conntrack.ko"));
        assert!(
            pos("kernel/net/netfilter/nf_conntrack.ko") < pos("kernel/net/netfilter/nf_nat.ko")
        );
    }

    #[test]
    fn module_names_fold_dashes_and_compression() {
        assert_eq!(module_name("kernel/fs/9p/9p-fs.ko"), "9p_fs");
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko.xz"),
            "9pnet_virtio"
        );
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio_pci.ko"),
            "virtio_pci"
        );
    }

    #[test]
    fn a_split_image_names_its_binary_and_modules_packages() {
        let depends = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
            linux-base-7.2.13+deb14-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1), \
            linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)";
        assert_eq!(
            split_image_parts(depends),
            [
                "linux-base-7.2.13+deb14-amd64",
                "linux-binary-7.2.13+deb14-amd64",
                "linux-modules-7.2.13+deb14-amd64"
            ]
        );
        let whole =
            "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool";
        assert!(split_image_parts(whole).is_empty());
    }
}

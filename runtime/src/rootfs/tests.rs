use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use tar::{EntryType, Header};
use tempfile::TempDir;

/// Appends an entry with a raw name, as a hostile archive would carry it
/// (tar::Builder's path setters refuse these names).
fn raw(ar: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
    let mut h = Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(data.len() as u64);
    h.set_uid(u64::from(nix::unistd::geteuid().as_raw()));
    h.set_gid(u64::from(nix::unistd::getegid().as_raw()));
    h.set_mtime(0);
    h.set_cksum();
    ar.append(&h, data).expect("append to memory");
}

#[test]
fn oversized_and_overfull_archives_are_refused() {
    let sb = Sandbox::new();
    let mut ar = tar::Builder::new(Vec::new());
    raw(&mut ar, "a", EntryType::Regular, "", &[0u8; 600]);
    raw(&mut ar, "b", EntryType::Regular, "", &[0u8; 600]);
    let bytes = ar.into_inner().expect("tar");
    let small = UnpackLimits {
        bytes: 1000,
        entries: 10,
    };
    let e = unpack_tar_reader(&bytes[..], Path::new("big.tar"), &sb.dest(), false, &small)
        .expect_err("over the byte budget");
    assert!(e.to_string().contains("more than 1000 bytes"), "{e}");
    assert!(e.to_string().contains("\"b\""), "names the entry: {e}");
    let few = UnpackLimits {
        bytes: 1 << 20,
        entries: 1,
    };
    let e = unpack_tar_reader(&bytes[..], Path::new("big.tar"), &sb.dest(), false, &few)
        .expect_err("over the entry budget");
    assert!(e.to_string().contains("more than 1 entries"), "{e}");
    assert!(sb.outside_entries().len() <= 2, "nothing escaped");
}

#[test]
fn a_truncated_archive_is_an_error_naming_it() {
    let sb = Sandbox::new();
    let mut ar = tar::Builder::new(Vec::new());
    raw(&mut ar, "file", EntryType::Regular, "", &[7u8; 4096]);
    let bytes = ar.into_inner().expect("tar");
    let cut = &bytes[..512 + 1000];
    let e = unpack_tar_reader(
        cut,
        Path::new("cut.tar"),
        &sb.dest(),
        false,
        &UnpackLimits::DEFAULT,
    )
    .expect_err("truncated");
    assert!(e.to_string().contains("cut.tar"), "{e}");
}

struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-unit-")
            .tempdir()
            .expect("temp dir");
        fs::create_dir(dir.path().join("dest")).expect("dest");
        fs::create_dir(dir.path().join("outside")).expect("outside");
        fs::write(dir.path().join("outside/sentinel"), "keep").expect("sentinel");
        Sandbox { dir }
    }
    fn dest(&self) -> PathBuf {
        self.dir.path().join("dest")
    }
    fn unpack(&self, bytes: &[u8]) -> Result<(), RootfsError> {
        unpack_tar_reader(
            bytes,
            Path::new("test.tar"),
            &self.dest(),
            false,
            &UnpackLimits::DEFAULT,
        )
    }
    /// Everything outside dest/, without following symlinks.
    fn outside_entries(&self) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("readable") {
                let p = e.expect("entry").path();
                if p == self.dest() {
                    continue;
                }
                if fs::symlink_metadata(&p).expect("stat").is_dir() {
                    stack.push(p.clone());
                }
                out.insert(
                    p.strip_prefix(self.dir.path())
                        .expect("inside")
                        .to_path_buf(),
                );
            }
        }
        out
    }
    /// Mode and modification time of the outside dir and its sentinel
    /// (a chmod or utime through a symlink would change them).
    fn outside_stat(&self) -> Vec<(u32, i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        ["outside", "outside/sentinel"]
            .iter()
            .map(|p| {
                let m = fs::metadata(self.dir.path().join(p)).expect("stat");
                (m.mode(), m.mtime(), m.mtime_nsec())
            })
            .collect()
    }
    fn untouched(&self) -> bool {
        let want: BTreeSet<PathBuf> = ["outside", "outside/sentinel"]
            .iter()
            .map(PathBuf::from)
            .collect();
        self.outside_entries() == want
            && fs::read_to_string(self.dir.path().join("outside/sentinel"))
                .ok()
                .as_deref()
                == Some("keep")
    }
}

fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut ar = tar::Builder::new(Vec::new());
    build(&mut ar);
    ar.into_inner().expect("finish")
}

#[test]
fn a_plain_archive_unpacks() {
    let s = Sandbox::new();
    let bytes = archive(|ar| {
        raw(ar, "bin/", EntryType::Directory, "", b"");
        raw(ar, "bin/busybox", EntryType::Regular, "", b"ELF");
        raw(ar, "bin/sh", EntryType::Symlink, "busybox", b"");
        raw(ar, "bin/abs", EntryType::Symlink, "/bin/busybox", b"");
        raw(ar, "bin/hard", EntryType::Link, "bin/busybox", b"");
    });
    s.unpack(&bytes).expect("unpacks");
    assert_eq!(fs::read(s.dest().join("bin/sh")).expect("via link"), b"ELF");
    assert_eq!(
        fs::read(s.dest().join("bin/hard")).expect("hard link"),
        b"ELF"
    );
    assert!(s.untouched());
}

#[test]
fn gzip_is_sniffed() {
    let s = Sandbox::new();
    let bytes = archive(|ar| raw(ar, "f", EntryType::Regular, "", b"x"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).expect("compress");
    let path = s.dir.path().join("img.tar.gz");
    fs::write(&path, gz.finish().expect("finish")).expect("write");
    unpack_tar(&path, &s.dest()).expect("unpacks");
    assert_eq!(fs::read(s.dest().join("f")).expect("file"), b"x");
}

#[rstest::rstest]
#[case("../outside/evil", EntryType::Regular, "", "path contains ..")]
#[case("/abs", EntryType::Regular, "", "absolute path")]
#[case("a/../../x", EntryType::Regular, "", "path contains ..")]
#[case(
    "l",
    EntryType::Symlink,
    "../outside",
    "symlink to ../outside leaves the root"
)]
#[case(
    "a/l",
    EntryType::Symlink,
    "../../x",
    "symlink to ../../x leaves the root"
)]
#[case(
    "h",
    EntryType::Link,
    "/etc/passwd",
    "hard link target /etc/passwd: absolute path"
)]
#[case(
    "h",
    EntryType::Link,
    "../outside/sentinel",
    "hard link target ../outside/sentinel: path contains .."
)]
#[case("dev/sda", EntryType::Block, "", "device nodes are not unpacked")]
#[case("dev/mem", EntryType::Char, "", "device nodes are not unpacked")]
fn escapes_are_refused_by_name(
    #[case] name: &str,
    #[case] kind: EntryType,
    #[case] link: &str,
    #[case] reason: &str,
) {
    let s = Sandbox::new();
    let bytes = archive(|ar| raw(ar, name, kind, link, b""));
    let err = s.unpack(&bytes).expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!("test.tar: entry {name:?} refused: {reason}")
    );
    assert!(s.untouched());
}

/// An archive puts a symlink to the outside dir (`l`) and to the
/// sentinel (`f`), then a second entry at or through it. Absolute
/// symlinks are fine in an image (they resolve inside the container)
/// but are never followed while unpacking.
#[rstest::rstest]
#[case::file_through_a_symlink(
    "l/evil",
    EntryType::Regular,
    "",
    Some("would be written through the symlink")
)]
#[case::dir_over_a_symlink(
    "l",
    EntryType::Directory,
    "",
    Some("would be written through the symlink")
)]
#[case::file_over_a_symlink("l", EntryType::Regular, "", None)]
#[case::file_over_a_symlink_to_a_file("f", EntryType::Regular, "", None)]
#[case::fifo_over_a_symlink("l", EntryType::Fifo, "", None)]
#[case::symlink_over_a_symlink("f", EntryType::Symlink, "elsewhere", None)]
#[case::hard_link_through_a_symlink(
    "h",
    EntryType::Link,
    "l/sentinel",
    Some("hard link target l/sentinel goes through the symlink")
)]
#[case::hard_link_to_a_symlink("h", EntryType::Link, "f", Some("hard link target f is a symlink"))]
#[case::whiteout_through_a_symlink(
    "l/.wh.sentinel",
    EntryType::Regular,
    "",
    Some("would be written through the symlink")
)]
#[case::opaque_through_a_symlink(
    "l/.wh..wh..opq",
    EntryType::Regular,
    "",
    Some("would be written through the symlink")
)]
fn an_entry_at_or_through_a_symlink_never_reaches_outside(
    #[case] name: &str,
    #[case] kind: EntryType,
    #[case] link: &str,
    #[case] refused: Option<&str>,
) {
    let s = Sandbox::new();
    let outside = s.dir.path().join("outside");
    let before = s.outside_stat();
    let bytes = archive(|ar| {
        raw(
            ar,
            "l",
            EntryType::Symlink,
            outside.to_str().expect("utf8"),
            b"",
        );
        let sentinel = outside.join("sentinel");
        raw(
            ar,
            "f",
            EntryType::Symlink,
            sentinel.to_str().expect("utf8"),
            b"",
        );
        raw(ar, name, kind, link, b"");
    });
    // As a plain archive and as an OCI layer (whiteouts interpreted).
    for layer in [false, true] {
        let dest = s.dest().join(format!("{layer}"));
        fs::create_dir(&dest).expect("dest");
        let got = unpack_tar_reader(
            &bytes[..],
            Path::new("test.tar"),
            &dest,
            layer,
            &UnpackLimits::DEFAULT,
        );
        match (refused, got) {
            (Some(why), Err(e)) => assert!(e.to_string().contains(why), "{e}"),
            (None, Ok(())) => {
                let m = fs::symlink_metadata(dest.join(name)).expect("unpacked");
                assert_eq!(m.file_type().is_symlink(), kind == EntryType::Symlink);
            }
            (_, Err(e)) if name.contains(".wh.") && !layer => {
                panic!("a plain archive takes .wh. names as files: {e}")
            }
            (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
        }
        assert!(s.untouched(), "{name}: {:?}", s.outside_entries());
        assert_eq!(s.outside_stat(), before, "{name}: mode or times changed");
    }
}

#[test]
fn overlay_options_put_the_top_layer_first() {
    let opts = overlay_options(
        &["/l/0".into(), "/l/1".into()],
        Path::new("/u"),
        Path::new("/w"),
    )
    .expect("valid");
    assert_eq!(
        opts.to_str(),
        Ok("lowerdir=/l/1:/l/0,upperdir=/u,workdir=/w")
    );
    let err =
        overlay_options(&["/a:b".into()], Path::new("/u"), Path::new("/w")).expect_err("colon");
    assert_eq!(
        err.to_string(),
        "/a:b: overlay paths cannot contain ':', ',' or '\\'"
    );
}

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bytes).expect("compress");
    gz.finish().expect("finish")
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

fn one_file(name: &str, data: &[u8]) -> Vec<u8> {
    archive(|ar| raw(ar, name, EntryType::Regular, "", data))
}

/// The blob file of the `n`th layer of the layout's manifest, and its
/// digest.
fn layer_blob(layout: &Path, n: usize) -> (PathBuf, String) {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    let digest = |d: &serde_json::Value| d["digest"].as_str().expect("digest").to_owned();
    let path = |d: &str| layout.join("blobs").join(d.replace(':', "/"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(path(&digest(&index["manifests"][0]))).expect("manifest"))
            .expect("json");
    let d = digest(&manifest["layers"][n]);
    (path(&d), d)
}

#[test]
fn oci_layout_layers_unpack_in_order() {
    let s = Sandbox::new();
    let layout = s.dir.path().join("oci");
    let l0 = one_file("etc/os", b"base");
    let l1 = gzip(&one_file("etc/app", b"app"));
    let l2 = zstd(&one_file("etc/extra", b"zstd"));
    write_oci_layout(&layout, &[(TAR, &l0), (TAR_GZIP, &l1), (TAR_ZSTD, &l2)]).expect("layout");
    let dirs = unpack_oci_layout(&layout, &s.dest().join("layers")).expect("unpacks");
    assert_eq!(dirs.len(), 3);
    assert_eq!(fs::read(dirs[0].join("etc/os")).expect("l0"), b"base");
    assert_eq!(fs::read(dirs[1].join("etc/app")).expect("l1"), b"app");
    assert_eq!(fs::read(dirs[2].join("etc/extra")).expect("l2"), b"zstd");

    fs::write(
        layout.join("index.json"),
        r#"{"manifests":[{"digest":"sha256:../../x","size":1}]}"#,
    )
    .expect("index");
    let err = unpack_oci_layout(&layout, &s.dest().join("layers2")).expect_err("bad digest");
    assert!(err.to_string().contains("is not algo:hex"), "{err}");
}

#[test]
fn a_zstd_layer_of_several_frames_unpacks() {
    let s = Sandbox::new();
    let layout = s.dir.path().join("oci");
    let tar = archive(|ar| {
        raw(ar, "a", EntryType::Regular, "", &[b'a'; 3000]);
        raw(ar, "b", EntryType::Regular, "", b"bee");
    });
    // zstd(1) on concatenated input: one frame after another.
    let mut frames = zstd(&tar[..1536]);
    frames.extend(zstd(&tar[1536..]));
    write_oci_layout(&layout, &[(TAR_ZSTD, &frames)]).expect("layout");
    let dirs = unpack_oci_layout(&layout, &s.dest().join("layers")).expect("unpacks");
    assert_eq!(fs::read(dirs[0].join("a")).expect("a"), vec![b'a'; 3000]);
    assert_eq!(fs::read(dirs[0].join("b")).expect("b"), b"bee");
}

#[rstest::rstest]
#[case::plain(TAR)]
#[case::gzip(TAR_GZIP)]
#[case::zstd(TAR_ZSTD)]
fn a_tampered_layer_is_refused_naming_digest_and_file(#[case] media_type: &str) {
    let s = Sandbox::new();
    let layout = s.dir.path().join("oci");
    let tar = one_file("etc/os", b"genuine");
    let blob = match media_type {
        TAR_GZIP => gzip(&tar),
        TAR_ZSTD => zstd(&tar),
        _ => tar,
    };
    write_oci_layout(&layout, &[(media_type, &blob)]).expect("layout");
    let (file, digest) = layer_blob(&layout, 0);
    let mut bytes = fs::read(&file).expect("blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&file, &bytes).expect("tamper");
    let err = unpack_oci_layout(&layout, &s.dest().join("layers")).expect_err("tampered");
    let msg = err.to_string();
    assert!(
        matches!(&err, RootfsError::BlobMismatch(m) if m.what == "digest"),
        "{msg}"
    );
    assert!(msg.contains(&digest), "names the digest: {msg}");
    assert!(
        msg.contains(&file.display().to_string()),
        "names the file: {msg}"
    );
    assert!(
        !s.dest().join("layers/0/etc/os").exists(),
        "nothing unpacked from it"
    );
}

#[test]
fn a_layer_of_the_wrong_size_is_refused() {
    let s = Sandbox::new();
    let layout = s.dir.path().join("oci");
    write_oci_layout(&layout, &[(TAR, &one_file("f", b"x"))]).expect("layout");
    let (file, digest) = layer_blob(&layout, 0);
    let mut bytes = fs::read(&file).expect("blob");
    bytes.extend_from_slice(&[0u8; 512]);
    fs::write(&file, &bytes).expect("grow");
    let err = unpack_oci_layout(&layout, &s.dest().join("layers")).expect_err("size");
    assert_eq!(
        err.to_string(),
        format!(
            "OCI blob {} does not match its descriptor {digest}: size is {}, not {}",
            file.display(),
            bytes.len(),
            bytes.len() - 512
        )
    );
}

#[rstest::rstest]
#[case::manifest("manifests")]
#[case::config("config")]
fn a_tampered_manifest_or_config_is_refused(#[case] which: &str) {
    let s = Sandbox::new();
    let layout = s.dir.path().join("oci");
    write_oci_layout(&layout, &[(TAR, &one_file("f", b"x"))]).expect("layout");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    let manifest_digest = index["manifests"][0]["digest"].as_str().expect("digest");
    let blob_of = |d: &str| layout.join("blobs").join(d.replace(':', "/"));
    let digest = if which == "config" {
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(blob_of(manifest_digest)).expect("manifest"))
                .expect("json");
        manifest["config"]["digest"]
            .as_str()
            .expect("digest")
            .to_owned()
    } else {
        manifest_digest.to_owned()
    };
    // Same size, other content: only the digest can tell.
    let file = blob_of(&digest);
    let mut bytes = fs::read(&file).expect("blob");
    bytes[0] = if bytes[0] == b' ' { b'\n' } else { b' ' };
    fs::write(&file, &bytes).expect("tamper");
    let err = unpack_oci_layout(&layout, &s.dest().join("layers")).expect_err("tampered");
    let msg = err.to_string();
    assert!(msg.contains(&digest), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
}

#[test]
fn descriptors_need_a_size_and_a_known_algorithm() {
    let s = Sandbox::new();
    let layout = s.dir.path().join("oci");
    fs::create_dir_all(&layout).expect("layout");
    let sha = "a".repeat(64);
    for (index, want) in [
        (
            format!(r#"{{"manifests":[{{"digest":"sha256:{sha}"}}]}}"#),
            "missing field `size`".to_owned(),
        ),
        (
            format!(r#"{{"manifests":[{{"digest":"md5:{sha}","size":1}}]}}"#),
            "algorithm md5 is not sha256 or sha512".to_owned(),
        ),
        (
            r#"{"manifests":[{"digest":"sha256:ABCD","size":1}]}"#.to_owned(),
            "is not 64 lowercase hex digits".to_owned(),
        ),
    ] {
        fs::write(layout.join("index.json"), index).expect("index");
        let err = unpack_oci_layout(&layout, &s.dest().join("l")).expect_err("refused");
        assert!(err.to_string().contains(&want), "{err}");
    }
}

#[test]
fn minimal_rootfs_has_the_skeleton_and_the_binary() {
    let s = Sandbox::new();
    let bin = s.dir.path().join("outside/sentinel");
    minimal_rootfs(&s.dest(), &[(&bin, "/probe"), (&bin, "/usr/bin/tool")]).expect("builds");
    for d in ["bin", "dev", "proc", "sys", "tmp", "etc", "mnt"] {
        assert!(s.dest().join(d).is_dir(), "{d}");
    }
    assert!(fs::read_to_string(s.dest().join("etc/passwd"))
        .expect("passwd")
        .starts_with("root:x:0:0:"));
    let mode = fs::metadata(s.dest().join("probe"))
        .expect("probe")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    assert!(s.dest().join("usr/bin/tool").is_file());
    let err = minimal_rootfs(&s.dest(), &[(&bin, "../x")]).expect_err("relative");
    assert!(err.to_string().contains("must be absolute"), "{err}");
}

fn entry() -> impl Strategy<Value = (String, u8, String)> {
    let prefix = prop::sample::select(vec![
        "", "../", "/", "a/", "a/../../", "l/", "./", "a/b/", "la/",
    ]);
    let leaf = "[a-c]{1,2}";
    let target = prop::sample::select(vec![
        "../../outside",
        "..",
        "../x",
        "a",
        "/",
        "/etc",
        "../../../outside/sentinel",
        "b/../..",
        "outside",
    ]);
    (prefix, leaf, 0u8..4, target).prop_map(|(p, l, k, t)| (format!("{p}{l}"), k, t.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn nothing_is_ever_written_outside(entries in prop::collection::vec(entry(), 1..8)) {
        let s = Sandbox::new();
        let abs_outside = s.dir.path().join("outside");
        let bytes = archive(|ar| {
            // A symlink to the absolute outside dir first, so later
            // entries under `la/` try to write through it.
            raw(ar, "la", EntryType::Symlink, abs_outside.to_str().unwrap_or("/"), b"");
            for (name, kind, target) in &entries {
                let kind = [EntryType::Regular, EntryType::Directory, EntryType::Symlink, EntryType::Link][*kind as usize];
                let link = if matches!(kind, EntryType::Symlink | EntryType::Link) { target.as_str() } else { "" };
                raw(ar, name, kind, link, b"data");
            }
        });
        let _ = s.unpack(&bytes);
        prop_assert!(s.untouched(), "outside changed: {:?}", s.outside_entries());
    }
}

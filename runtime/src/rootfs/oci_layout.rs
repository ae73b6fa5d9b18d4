//! OCI image layouts: index, manifest and layers, each blob checked against
//! its digest while it is read, layers unpacked in order as overlay lowerdirs.

use super::*;

#[derive(serde::Deserialize)]
pub(super) struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(serde::Deserialize)]
pub(super) struct OciManifest {
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

#[derive(serde::Deserialize)]
pub(super) struct OciDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    /// Bytes of the blob; required by the image spec.
    size: u64,
}

/// The digest algorithms a descriptor may name, with their hex length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DigestAlgo {
    Sha256,
    Sha512,
}

impl DigestAlgo {
    fn parse(name: &str) -> Option<(DigestAlgo, usize)> {
        match name {
            "sha256" => Some((DigestAlgo::Sha256, 64)),
            "sha512" => Some((DigestAlgo::Sha512, 128)),
            _ => None,
        }
    }
}

/// A descriptor's digest, checked for its shape, and the blob file it names.
pub(super) struct Blob {
    algo: DigestAlgo,
    /// `algo:hex` as the descriptor wrote it.
    digest: String,
    hex: String,
    size: u64,
    path: PathBuf,
}

pub(super) fn blob(layout: &Path, d: &OciDescriptor) -> Result<Blob, RootfsError> {
    let digest = &d.digest;
    let (algo, hex) = digest.split_once(':').ok_or_else(|| RootfsError::Oci {
        path: layout.to_path_buf(),
        message: format!("digest {digest:?} has no algorithm"),
    })?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok(algo) || !ok(hex) {
        return Err(RootfsError::Oci {
            path: layout.to_path_buf(),
            message: format!("digest {digest:?} is not algo:hex"),
        });
    }
    let Some((kind, len)) = DigestAlgo::parse(algo) else {
        return Err(RootfsError::Oci {
            path: layout.to_path_buf(),
            message: format!("digest {digest:?}: algorithm {algo} is not sha256 or sha512"),
        });
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(RootfsError::Oci {
            path: layout.to_path_buf(),
            message: format!("digest {digest:?} is not {len} lowercase hex digits"),
        });
    }
    Ok(Blob {
        algo: kind,
        digest: digest.clone(),
        hex: hex.to_owned(),
        size: d.size,
        path: layout.join("blobs").join(algo).join(hex),
    })
}

/// Counts and hashes every byte read through it.
pub(super) struct Verifying<R> {
    inner: R,
    hash: Hasher,
    bytes: u64,
}

pub(super) enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl<R: Read> Verifying<R> {
    fn new(inner: R, algo: DigestAlgo) -> Verifying<R> {
        use sha2::Digest;
        let hash = match algo {
            DigestAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        };
        Verifying {
            inner,
            hash,
            bytes: 0,
        }
    }

    /// Reads what is left, then compares size and digest with `blob`'s.
    fn finish(mut self, blob: &Blob) -> Result<(), RootfsError> {
        io::copy(&mut self, &mut io::sink()).map_err(io_err("read blob", &blob.path))?;
        use sha2::Digest;
        let found = match self.hash {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
        };
        if self.bytes != blob.size {
            return Err(blob.mismatch("size", blob.size.to_string(), self.bytes.to_string()));
        }
        if found != blob.hex {
            let algo = blob.digest.split_once(':').map_or("", |(a, _)| a);
            return Err(blob.mismatch("digest", blob.digest.clone(), format!("{algo}:{found}")));
        }
        Ok(())
    }
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        match &mut self.hash {
            Hasher::Sha256(h) => h.update(&buf[..n]),
            Hasher::Sha512(h) => h.update(&buf[..n]),
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Blob {
    fn mismatch(&self, what: &'static str, expected: String, found: String) -> RootfsError {
        RootfsError::BlobMismatch(Box::new(BlobMismatch {
            path: self.path.clone(),
            digest: self.digest.clone(),
            what,
            expected,
            found,
        }))
    }

    fn open(&self) -> Result<fs::File, RootfsError> {
        let file = fs::File::open(&self.path).map_err(io_err("open blob", &self.path))?;
        let len = file
            .metadata()
            .map_err(io_err("stat blob", &self.path))?
            .len();
        // The cheap check first: a wrong size is refused before any read.
        if len != self.size {
            return Err(self.mismatch("size", self.size.to_string(), len.to_string()));
        }
        Ok(file)
    }

    /// The whole blob, verified (manifests and configs: small, and parsed
    /// from the very bytes that were hashed).
    fn read_verified(&self) -> Result<Vec<u8>, RootfsError> {
        let mut v = Verifying::new(self.open()?, self.algo);
        let mut bytes = Vec::new();
        v.read_to_end(&mut bytes)
            .map_err(io_err("read blob", &self.path))?;
        v.finish(self)?;
        Ok(bytes)
    }

    /// Checks size and digest of the whole file, then rewinds it.
    fn verify(&self, file: &mut fs::File) -> Result<(), RootfsError> {
        Verifying::new(&mut *file, self.algo).finish(self)?;
        file.rewind().map_err(io_err("rewind blob", &self.path))
    }
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
) -> Result<T, RootfsError> {
    serde_json::from_slice(bytes).map_err(|e| RootfsError::Oci {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The compression a layer's media type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

impl LayerCompression {
    /// `application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]` (and the
    /// nondistributable and Docker spellings, which end the same way).
    fn of(media_type: &str) -> Option<LayerCompression> {
        if media_type.ends_with("gzip") {
            Some(LayerCompression::Gzip)
        } else if media_type.ends_with("zstd") {
            Some(LayerCompression::Zstd)
        } else if media_type.ends_with("tar") || media_type.is_empty() {
            Some(LayerCompression::None)
        } else {
            None
        }
    }
}

/// A zstd stream of one or more frames, as zstd(1) writes them
/// concatenated (ruzstd decodes one frame at a time). Pure Rust: nothing
/// in C for the static build.
pub(super) struct ZstdFrames<R: io::BufRead> {
    frame: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: io::BufRead> ZstdFrames<R> {
    fn new(inner: R) -> io::Result<ZstdFrames<R>> {
        let frame = ruzstd::decoding::StreamingDecoder::new(inner).map_err(io::Error::other)?;
        Ok(ZstdFrames { frame: Some(frame) })
    }
}

impl<R: io::BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(frame) = self.frame.as_mut() else {
                return Ok(0);
            };
            let n = frame.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This frame is done: another may follow.
            let Some(frame) = self.frame.take() else {
                return Ok(0);
            };
            let (mut inner, decoder) = frame.into_parts();
            if inner.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.frame = Some(
                ruzstd::decoding::StreamingDecoder::new_with_decoder(inner, decoder)
                    .map_err(io::Error::other)?,
            );
        }
    }
}

/// index.json → first manifest → its layers, each unpacked (whiteouts as
/// overlay whiteouts) into `into/<n>`. Returns the layer dirs bottom first.
/// Every blob (manifest, config, layers) is checked against its
/// descriptor's size and digest before it is used; a layer is hashed again
/// while it unpacks, so a blob changed in between is caught too.
pub fn unpack_oci_layout(layout: &Path, into: &Path) -> Result<Vec<PathBuf>, RootfsError> {
    let index_path = layout.join("index.json");
    let index: OciIndex = parse_json(
        &index_path,
        &fs::read(&index_path).map_err(io_err("read", &index_path))?,
    )?;
    let first = index.manifests.first().ok_or_else(|| RootfsError::Oci {
        path: layout.to_path_buf(),
        message: "index.json lists no manifest".into(),
    })?;
    let manifest_blob = blob(layout, first)?;
    let manifest: OciManifest = parse_json(&manifest_blob.path, &manifest_blob.read_verified()?)?;
    blob(layout, &manifest.config)?.read_verified()?;
    if manifest.layers.is_empty() {
        return Err(RootfsError::Oci {
            path: layout.to_path_buf(),
            message: "the manifest has no layers".into(),
        });
    }
    fs::create_dir_all(into).map_err(io_err("mkdir", into))?;
    let mut dirs = Vec::new();
    for (n, layer) in manifest.layers.iter().enumerate() {
        let blob = blob(layout, layer)?;
        let Some(compression) = LayerCompression::of(&layer.media_type) else {
            return Err(RootfsError::Oci {
                path: blob.path,
                message: format!(
                    "layer media type {} is not tar, tar+gzip or tar+zstd",
                    layer.media_type
                ),
            });
        };
        let mut file = blob.open()?;
        blob.verify(&mut file)?;
        let dir = into.join(n.to_string());
        mkdir(&dir, 0o755)?;
        let mut verifying = Verifying::new(file, blob.algo);
        let reader = BufReader::new(&mut verifying);
        let limits = &UnpackLimits::DEFAULT;
        match compression {
            LayerCompression::None => unpack_tar_reader(reader, &blob.path, &dir, true, limits)?,
            LayerCompression::Gzip => {
                unpack_tar_reader(GzDecoder::new(reader), &blob.path, &dir, true, limits)?
            }
            LayerCompression::Zstd => {
                let zstd = ZstdFrames::new(reader).map_err(|e| RootfsError::Oci {
                    path: blob.path.clone(),
                    message: format!("not a zstd stream: {e}"),
                })?;
                unpack_tar_reader(zstd, &blob.path, &dir, true, limits)?
            }
        }
        verifying.finish(&blob)?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Writes a minimal OCI image layout at `layout`: each layer blob (with its
/// media type), an empty config, the manifest and index.json, every
/// descriptor with its real sha256 and size. For tests and fixtures.
pub fn write_oci_layout(layout: &Path, layers: &[(&str, &[u8])]) -> io::Result<()> {
    use sha2::Digest;
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let put = |media_type: &str, bytes: &[u8]| -> io::Result<serde_json::Value> {
        let hex = hex(&sha2::Sha256::digest(bytes));
        fs::write(blobs.join(&hex), bytes)?;
        Ok(serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{hex}"),
            "size": bytes.len(),
        }))
    };
    let config = put("application/vnd.oci.image.config.v1+json", b"{}")?;
    let layers = layers
        .iter()
        .map(|(media_type, bytes)| put(media_type, bytes))
        .collect::<io::Result<Vec<_>>>()?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    });
    let manifest = put(
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    )?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
    fs::write(layout.join("index.json"), index.to_string())
}

//! gpubox's software bill of materials: an SPDX 2.3 JSON document listing an
//! image's Nix store paths (name, version, NAR hash, references), the host files
//! `hostBinaries` copied in (with their Debian package where the build machine's
//! dpkg database knows it) and, once images can start from one, the base image.
//!
//! This crate owns the document's shape. It does not run Nix, read images or
//! package databases, or write files: the caller gathers [`SbomInput`] and
//! writes [`render`]'s bytes.

mod nar_hash;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use nar_hash::sha256_hex;

/// An installed Debian package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianPackage {
    /// Without the `:arch` qualifier, e.g. `libc6`.
    pub name: String,
    pub version: String,
}

/// Where the document's namespace URI starts; `.invalid` because it names
/// the document, not a place to fetch it from.
const NAMESPACE_BASE: &str = "https://gpubox.invalid/spdx";
const NOASSERTION: &str = "NOASSERTION";
const IMAGE_ID: &str = "SPDXRef-Image";
const BASE_IMAGE_ID: &str = "SPDXRef-BaseImage";

/// Everything the SBOM of one built image says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SbomInput {
    pub image_name: String,
    pub image_tag: String,
    /// `sha256:<hex>`, the digest of the image's manifest.
    pub manifest_digest: String,
    /// The image's creation time in Unix seconds, so the SBOM is as
    /// reproducible as the image.
    pub created: i64,
    pub store_paths: Vec<StorePathEntry>,
    pub host_files: Vec<HostFileEntry>,
    /// `sha256:<hex>` of the base image's manifest, for an image built on one.
    pub base_image_digest: Option<String>,
    /// The image's platform, `linux/arm64`: its architecture goes into the
    /// image's purl (`arch=arm64`).
    pub platform: String,
    /// `sha256:<hex>` of the multi-platform index the image is part of, if any;
    /// said in the image package's comment, with the platform.
    pub index_digest: Option<String>,
}

/// One path of the image's Nix closure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorePathEntry {
    /// The full path, `/nix/store/<hash>-<name>`.
    pub path: String,
    /// As Nix prints it: `sha256:<nix base32>` or `sha256-<base64>`.
    pub nar_hash: String,
    pub nar_size: u64,
    /// Full store paths; references to the path itself or to paths not in
    /// [`SbomInput::store_paths`] are left out.
    pub references: Vec<String>,
}

/// One file `hostBinaries` copied from the build machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFileEntry {
    pub image_path: PathBuf,
    pub host_path: PathBuf,
    pub debian_package: Option<DebianPackage>,
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("{path} has the NAR hash {hash}, which is not a SHA-256 as Nix prints it (sha256:<base32> or sha256-<base64>); check `nix path-info --json {path}`")]
    BadNarHash { path: String, hash: String },
    #[error("{0} is not a store path (/nix/store/<hash>-<name>)")]
    BadStorePath(String),
    #[error("the image's manifest digest {0} is not sha256:<64 hex digits>")]
    BadManifestDigest(String),
    #[error("the base image digest {0} is not sha256:<64 hex digits>")]
    BadBaseDigest(String),
    #[error(transparent)]
    Created(#[from] gpubox_oci::image::ImageError),
}

/// Splits a store path name into name and version the way Nix's `DrvName`
/// does: the version starts after the first `-` that is followed by something
/// other than a letter.
pub fn split_name_version(name: &str) -> (&str, Option<&str>) {
    let bytes = name.as_bytes();
    let split = bytes
        .windows(2)
        .position(|pair| pair[0] == b'-' && !pair[1].is_ascii_alphabetic());
    match split {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    }
}

/// The SPDX 2.3 document for `input`. Packages and relationships are sorted,
/// so the same input always gives the same document.
pub fn spdx_document(input: &SbomInput) -> Result<Value, SbomError> {
    let manifest_hex = sha256_digest_hex(&input.manifest_digest)
        .ok_or_else(|| SbomError::BadManifestDigest(input.manifest_digest.clone()))?;
    let created = gpubox_oci::image::rfc3339(input.created)?;

    let mut store_ids = BTreeMap::new();
    for entry in &input.store_paths {
        store_ids.insert(entry.path.as_str(), store_path_id(&entry.path)?);
    }
    let mut packages = BTreeMap::new();
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID)];
    packages.insert(IMAGE_ID.to_owned(), image_package(input, manifest_hex));

    for entry in &input.store_paths {
        let id = &store_ids[entry.path.as_str()];
        packages.insert(id.clone(), store_path_package(id, entry)?);
        relationships.push(relationship(IMAGE_ID, "CONTAINS", id));
        for reference in &entry.references {
            // A closure holds everything its paths reference; anything else
            // would name a package the document does not have.
            match store_ids.get(reference.as_str()) {
                Some(target) if reference != &entry.path => {
                    relationships.push(relationship(id, "DEPENDS_ON", target));
                }
                _ => {}
            }
        }
    }
    for file in &input.host_files {
        let id = host_file_id(file);
        packages.insert(id.clone(), host_file_package(&id, file));
        relationships.push(relationship(IMAGE_ID, "CONTAINS", &id));
    }
    if let Some(base) = &input.base_image_digest {
        let hex = sha256_digest_hex(base).ok_or_else(|| SbomError::BadBaseDigest(base.clone()))?;
        packages.insert(BASE_IMAGE_ID.to_owned(), base_image_package(hex));
        relationships.push(relationship(IMAGE_ID, "DESCENDANT_OF", BASE_IMAGE_ID));
    }
    relationships.sort_by_cached_key(Value::to_string);
    relationships.dedup();

    Ok(json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}:{}", input.image_name, input.image_tag),
        "documentNamespace": format!("{NAMESPACE_BASE}/{}/{manifest_hex}", input.image_name),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: gpubox-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages.into_values().collect::<Vec<_>>(),
        "relationships": relationships,
    }))
}

/// [`spdx_document`] as pretty-printed JSON ending in a newline.
pub fn render(input: &SbomInput) -> Result<Vec<u8>, SbomError> {
    let document = spdx_document(input)?;
    // A `Value` always serializes: its map keys are strings.
    let mut bytes = serde_json::to_vec_pretty(&document).unwrap_or_default();
    bytes.push(b'\n');
    Ok(bytes)
}

fn sha256_digest_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `SPDXRef-Package-<hash part>`: unique in a store, and the same in every
/// build.
fn store_path_id(path: &str) -> Result<String, SbomError> {
    let hash = store_path_base(path)
        .and_then(|base| base.split_once('-'))
        .map(|(hash, _)| hash)
        .filter(|hash| !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| SbomError::BadStorePath(path.to_owned()))?;
    Ok(format!("SPDXRef-Package-{hash}"))
}

fn store_path_base(path: &str) -> Option<&str> {
    let (dir, base) = path.rsplit_once('/')?;
    (!dir.is_empty()).then_some(base)
}

/// `SPDXRef-HostFile-<first 16 hex digits of SHA-256 of the image path>`:
/// image paths are unique in an image, but may hold characters SPDX IDs may not.
fn host_file_id(file: &HostFileEntry) -> String {
    let digest = Sha256::digest(file.image_path.as_os_str().as_encoded_bytes());
    format!("SPDXRef-HostFile-{}", &hex::encode(digest)[..16])
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({
        "spdxElementId": from,
        "relationshipType": kind,
        "relatedSpdxElement": to,
    })
}

fn image_package(input: &SbomInput, manifest_hex: &str) -> Value {
    let architecture = input.platform.rsplit('/').next().unwrap_or_default();
    let mut package = json!({
        "SPDXID": IMAGE_ID,
        "name": input.image_name,
        "versionInfo": input.image_tag,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [sha256_checksum(manifest_hex)],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            // purl qualifiers are sorted by name.
            "referenceLocator": format!(
                "pkg:oci/{}@sha256%3A{manifest_hex}?arch={architecture}&tag={}",
                input.image_name.rsplit('/').next().unwrap_or(&input.image_name),
                input.image_tag
            ),
        }],
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
    });
    if let Some(index) = &input.index_digest {
        package["comment"] = json!(format!(
            "the {} image of the multi-platform index {index}",
            input.platform
        ));
    }
    package
}

fn store_path_package(id: &str, entry: &StorePathEntry) -> Result<Value, SbomError> {
    let hex = sha256_hex(&entry.nar_hash).ok_or_else(|| SbomError::BadNarHash {
        path: entry.path.clone(),
        hash: entry.nar_hash.clone(),
    })?;
    let full_name = store_path_base(&entry.path)
        .and_then(|base| base.split_once('-'))
        .map(|(_, name)| name)
        .ok_or_else(|| SbomError::BadStorePath(entry.path.clone()))?;
    let (name, version) = split_name_version(full_name);
    let mut package = json!({
        "SPDXID": id,
        "name": name,
        "packageFileName": entry.path,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "checksums": [sha256_checksum(&hex)],
        "comment": format!("Nix store path; the checksum is its NAR hash; NAR size {} bytes", entry.nar_size),
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
    });
    if let Some(version) = version {
        package["versionInfo"] = json!(version);
    }
    Ok(package)
}

fn host_file_package(id: &str, file: &HostFileEntry) -> Value {
    let image_path = file.image_path.to_string_lossy();
    let file_name = file
        .image_path
        .file_name()
        .map_or_else(|| image_path.clone(), |n| n.to_string_lossy());
    let mut package = json!({
        "SPDXID": id,
        "name": file_name,
        "packageFileName": image_path,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "sourceInfo": format!("copied from {} on the build machine", file.host_path.to_string_lossy()),
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
    });
    if let Some(debian) = &file.debian_package {
        package["name"] = json!(debian.name);
        package["versionInfo"] = json!(debian.version);
    }
    package
}

fn base_image_package(manifest_hex: &str) -> Value {
    json!({
        "SPDXID": BASE_IMAGE_ID,
        "name": "base image",
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [sha256_checksum(manifest_hex)],
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
    })
}

fn sha256_checksum(hex: &str) -> Value {
    json!({ "algorithm": "SHA256", "checksumValue": hex })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "/nix/store/0c5s8xgc0ld8m3l1g6yz3m5ajr2i8k5g-hello-2.12.1";
    const GLIBC: &str = "/nix/store/1cgxgd0b6rdcfc1hl12s6pkmmz0a4yj1-glibc-2.39-52";
    const HELLO_NAR: &str = "sha256:1ww392dfyz1y3rjyva8k0b6z95sn6my3p894l4acmjkpr4a1239k";
    const GLIBC_NAR: &str = "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
    const MANIFEST_HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn input() -> SbomInput {
        SbomInput {
            image_name: "demo".to_owned(),
            image_tag: "1.0".to_owned(),
            manifest_digest: format!("sha256:{MANIFEST_HEX}"),
            created: 1_700_000_000,
            store_paths: vec![
                StorePathEntry {
                    path: HELLO.to_owned(),
                    nar_hash: HELLO_NAR.to_owned(),
                    nar_size: 200,
                    references: vec![GLIBC.to_owned(), HELLO.to_owned()],
                },
                StorePathEntry {
                    path: GLIBC.to_owned(),
                    nar_hash: GLIBC_NAR.to_owned(),
                    nar_size: 100,
                    references: vec![GLIBC.to_owned()],
                },
            ],
            host_files: vec![HostFileEntry {
                image_path: "/bin/ls".into(),
                host_path: "/usr/bin/ls".into(),
                debian_package: Some(DebianPackage {
                    name: "coreutils".to_owned(),
                    version: "9.1-1".to_owned(),
                }),
            }],
            base_image_digest: None,
            platform: "linux/amd64".to_owned(),
            index_digest: None,
        }
    }

    fn package<'a>(document: &'a Value, id: &str) -> &'a Value {
        document["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["SPDXID"] == id)
            .unwrap_or_else(|| panic!("no package {id} in {document:#}"))
    }

    fn relationships(document: &Value) -> Vec<(String, String, String)> {
        document["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let field = |k: &str| r[k].as_str().unwrap().to_owned();
                (
                    field("spdxElementId"),
                    field("relationshipType"),
                    field("relatedSpdxElement"),
                )
            })
            .collect()
    }

    #[test]
    fn splits_versions_like_nix() {
        assert_eq!(
            split_name_version("hello-2.12.1"),
            ("hello", Some("2.12.1"))
        );
        assert_eq!(
            split_name_version("glibc-2.39-52-bin"),
            ("glibc", Some("2.39-52-bin"))
        );
        assert_eq!(
            split_name_version("cuda_cudart-12.4.127"),
            ("cuda_cudart", Some("12.4.127"))
        );
        assert_eq!(
            split_name_version("gcc-wrapper-13.2.0"),
            ("gcc-wrapper", Some("13.2.0"))
        );
        assert_eq!(split_name_version("app"), ("app", None));
        assert_eq!(
            split_name_version("bash-interactive"),
            ("bash-interactive", None)
        );
    }

    #[test]
    fn describes_the_image_and_its_store_paths_and_host_files() {
        let document = spdx_document(&input()).unwrap();
        assert_eq!(document["spdxVersion"], "SPDX-2.3");
        assert_eq!(
            document["documentNamespace"],
            format!("https://gpubox.invalid/spdx/demo/{MANIFEST_HEX}")
        );
        assert_eq!(document["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            document["creationInfo"]["creators"][0],
            format!("Tool: gpubox-{}", env!("CARGO_PKG_VERSION"))
        );
        let hello = package(
            &document,
            "SPDXRef-Package-0c5s8xgc0ld8m3l1g6yz3m5ajr2i8k5g",
        );
        assert_eq!(hello["name"], "hello");
        assert_eq!(hello["versionInfo"], "2.12.1");
        assert_eq!(hello["packageFileName"], HELLO);
        assert_eq!(
            hello["checksums"][0]["checksumValue"],
            "330d1114c977caca14a124a13b7c355697f4cd0213a9ed651e3e7cef9a4883f3"
        );
        let glibc = package(
            &document,
            "SPDXRef-Package-1cgxgd0b6rdcfc1hl12s6pkmmz0a4yj1",
        );
        assert_eq!(glibc["versionInfo"], "2.39-52");
        assert_eq!(
            glibc["checksums"][0]["checksumValue"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let ls = document["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["packageFileName"] == "/bin/ls")
            .unwrap();
        assert_eq!(ls["name"], "coreutils");
        assert_eq!(ls["versionInfo"], "9.1-1");
        assert_eq!(
            package(&document, IMAGE_ID)["checksums"][0]["checksumValue"],
            MANIFEST_HEX
        );

        let rels = relationships(&document);
        let ls_id = ls["SPDXID"].as_str().unwrap();
        let hello_id = "SPDXRef-Package-0c5s8xgc0ld8m3l1g6yz3m5ajr2i8k5g".to_owned();
        let glibc_id = "SPDXRef-Package-1cgxgd0b6rdcfc1hl12s6pkmmz0a4yj1".to_owned();
        let r = |a: &str, k: &str, b: &str| (a.to_owned(), k.to_owned(), b.to_owned());
        let mut expected = vec![
            r("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID),
            r(IMAGE_ID, "CONTAINS", &hello_id),
            r(IMAGE_ID, "CONTAINS", &glibc_id),
            r(IMAGE_ID, "CONTAINS", ls_id),
            r(&hello_id, "DEPENDS_ON", &glibc_id),
        ];
        expected.sort();
        let mut sorted = rels.clone();
        sorted.sort();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn the_same_input_in_any_order_renders_the_same_bytes() {
        let first = render(&input()).unwrap();
        let mut shuffled = input();
        shuffled.store_paths.reverse();
        assert_eq!(render(&shuffled).unwrap(), first);
        assert!(first.ends_with(b"}\n"));
    }

    #[test]
    fn names_the_platform_and_the_index_it_belongs_to() {
        let document = spdx_document(&input()).unwrap();
        let image = package(&document, IMAGE_ID);
        assert_eq!(
            image["externalRefs"][0]["referenceLocator"],
            format!("pkg:oci/demo@sha256%3A{MANIFEST_HEX}?arch=amd64&tag=1.0")
        );
        assert!(image.get("comment").is_none());

        let mut arm = input();
        arm.platform = "linux/arm64".to_owned();
        arm.index_digest = Some(format!("sha256:{}", "cd".repeat(32)));
        let document = spdx_document(&arm).unwrap();
        let image = package(&document, IMAGE_ID);
        assert!(image["externalRefs"][0]["referenceLocator"]
            .as_str()
            .unwrap()
            .contains("?arch=arm64&tag=1.0"));
        assert_eq!(
            image["comment"],
            format!(
                "the linux/arm64 image of the multi-platform index sha256:{}",
                "cd".repeat(32)
            )
        );
    }

    #[test]
    fn names_a_base_image_by_digest() {
        let mut with_base = input();
        with_base.base_image_digest = Some(format!("sha256:{}", "ab".repeat(32)));
        let document = spdx_document(&with_base).unwrap();
        assert_eq!(
            package(&document, BASE_IMAGE_ID)["checksums"][0]["checksumValue"],
            "ab".repeat(32)
        );
        assert!(relationships(&document).contains(&(
            IMAGE_ID.to_owned(),
            "DESCENDANT_OF".to_owned(),
            BASE_IMAGE_ID.to_owned()
        )));
    }

    #[test]
    fn explains_bad_input() {
        let mut bad_hash = input();
        bad_hash.store_paths[0].nar_hash = "md5:abc".to_owned();
        let err = spdx_document(&bad_hash).unwrap_err().to_string();
        assert!(err.contains(HELLO) && err.contains("md5:abc"), "{err}");

        let mut bad_path = input();
        bad_path.store_paths[0].path = "hello".to_owned();
        let err = spdx_document(&bad_path).unwrap_err().to_string();
        assert!(err.contains("hello is not a store path"), "{err}");

        let mut bad_digest = input();
        bad_digest.manifest_digest = "sha256:xyz".to_owned();
        let err = spdx_document(&bad_digest).unwrap_err().to_string();
        assert!(err.contains("sha256:xyz"), "{err}");
    }
}

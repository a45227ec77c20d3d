//! What a `docker save` tarball holds, read without Docker: its `manifest.json` names each
//! image's config blob, whose sha256 is the image id.

use std::io::Read;
use std::path::Path;

/// One image in a tarball.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    /// `sha256:<hex>`
    pub id: String,
    pub tags: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
}

/// The images a tarball holds; an error names the tarball and what is wrong with it.
pub fn images(tarball: &Path) -> Result<Vec<Saved>, String> {
    let bad = |why: String| format!("{} is not a docker image tarball: {why}", tarball.display());
    let file = std::fs::File::open(tarball)
        .map_err(|e| format!("cannot open {}: {e}", tarball.display()))?;
    let mut ar = tar::Archive::new(file);
    let entries = ar.entries().map_err(|e| bad(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if path != Path::new("manifest.json") {
            continue;
        }
        let mut text = String::new();
        entry
            .by_ref()
            .take(16 << 20)
            .read_to_string(&mut text)
            .map_err(|e| bad(e.to_string()))?;
        let list: Vec<Entry> =
            serde_json::from_str(&text).map_err(|e| bad(format!("manifest.json: {e}")))?;
        return list
            .into_iter()
            .map(|e| {
                // "<hex>.json" (docker save) or "blobs/sha256/<hex>" (OCI layout)
                let name = e.config.rsplit('/').next().unwrap_or("");
                let hex = name.trim_end_matches(".json");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!("config {:?} is not a sha256 name", e.config)));
                }
                Ok(Saved {
                    id: format!("sha256:{hex}"),
                    tags: e.repo_tags.unwrap_or_default(),
                })
            })
            .collect();
    }
    Err(bad("it has no manifest.json".into()))
}

//! `fs-script`: an operator- or test-written list of file-system operations, all paths
//! relative to the installation root (`molt exec`, the engine's crash tests).

use super::{bad, Env};
use crate::copy_tree::CopyTree;
use crate::error::Error;
use crate::fsutil::safe_relative;
use crate::remove_path::RemovePath;
use crate::switch_link::SwitchLink;
use crate::verify_file::VerifyFile;
use crate::write_file::WriteFile;
use engine::{DynStep, StepClass};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const ID: &str = "fs-script";

/// A plan of file-system operations, all paths relative to the installation root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsScript {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "step")]
    pub steps: Vec<FsOp>,
}

/// One operation of an [`FsScript`]. `pivot = true` marks a reversible operation as the run's
/// pivot (recovery past it rolls forward).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum FsOp {
    WriteFile {
        path: String,
        contents: String,
        #[serde(default)]
        pivot: bool,
    },
    CopyTree {
        from: String,
        to: String,
        #[serde(default)]
        pivot: bool,
    },
    SwitchLink {
        link: String,
        target: String,
        #[serde(default)]
        pivot: bool,
    },
    VerifyFile {
        path: String,
        sha256: String,
    },
    RemovePath {
        path: String,
    },
}

impl FsScript {
    /// Parse the TOML form (`[[step]] op = "write_file" ...`).
    pub fn from_toml(text: &str) -> Result<FsScript, Error> {
        toml::from_str(text).map_err(|e| bad(ID, e.to_string()))
    }

    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        self.steps.iter().map(|op| op.step(env)).collect()
    }
}

fn class(pivot: bool) -> StepClass {
    if pivot {
        StepClass::Pivot
    } else {
        StepClass::Reversible
    }
}

impl FsOp {
    fn step(&self, env: &Env) -> Result<Box<dyn DynStep>, Error> {
        let path = |p: &str| {
            safe_relative(p)
                .map(|r| env.root.join(r))
                .map_err(|reason| bad(ID, reason))
        };
        let scratch = env.scratch.clone();
        Ok(match self {
            FsOp::WriteFile {
                path: p,
                contents,
                pivot,
            } => Box::new(WriteFile {
                rel: p.clone(),
                path: path(p)?,
                contents: contents.clone().into_bytes(),
                scratch,
                class: class(*pivot),
            }),
            FsOp::CopyTree { from, to, pivot } => Box::new(CopyTree {
                rel_from: from.clone(),
                rel_to: to.clone(),
                from: path(from)?,
                to: path(to)?,
                scratch,
                class: class(*pivot),
            }),
            FsOp::SwitchLink {
                link,
                target,
                pivot,
            } => {
                if Path::new(target).is_absolute() {
                    return Err(bad(ID, format!("link target {target:?} must be relative")));
                }
                Box::new(SwitchLink {
                    rel_link: link.clone(),
                    link: path(link)?,
                    target: PathBuf::from(target),
                    scratch,
                    class: class(*pivot),
                })
            }
            FsOp::VerifyFile { path: p, sha256 } => Box::new(VerifyFile {
                rel: p.clone(),
                path: path(p)?,
                sha256: sha256.clone(),
            }),
            FsOp::RemovePath { path: p } => Box::new(RemovePath {
                rel: p.clone(),
                path: path(p)?,
            }),
        })
    }
}

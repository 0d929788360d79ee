//! Whether two reports can be compared at all: the same `schema_version`, scenario name,
//! target kind and set of endpoints; otherwise [`Incompatible`] lists every [`Mismatch`]
//! found (or the schema version alone, since nothing else is meaningful across versions).

use std::collections::BTreeSet;
use std::fmt;

use crate::report::Report;

/// One reason two reports cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    SchemaVersion {
        a: u32,
        b: u32,
    },
    Scenario {
        a: String,
        b: String,
    },
    TargetKind {
        a: String,
        b: String,
    },
    Endpoints {
        only_a: Vec<String>,
        only_b: Vec<String>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::SchemaVersion { a, b } => {
                write!(f, "A has schema_version {a}, B has {b}")
            }
            Mismatch::Scenario { a, b } => {
                write!(f, "different scenarios: A ran {a:?}, B ran {b:?}")
            }
            Mismatch::TargetKind { a, b } => {
                write!(f, "different target kinds: A is {a:?}, B is {b:?}")
            }
            Mismatch::Endpoints { only_a, only_b } => {
                write!(f, "different endpoints")?;
                if !only_a.is_empty() {
                    write!(f, "; only in A: {}", only_a.join(", "))?;
                }
                if !only_b.is_empty() {
                    write!(f, "; only in B: {}", only_b.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// Why two reports cannot be compared: every shape difference found, or the schema version
/// alone (nothing else is meaningful across versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible(pub Vec<Mismatch>);

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot compare the reports: ")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Incompatible {}

/// Every shape difference between A and B, or Ok when they can be compared.
pub(super) fn check_shape(a: &Report, b: &Report) -> Result<(), Incompatible> {
    if a.schema_version != b.schema_version {
        return Err(Incompatible(vec![Mismatch::SchemaVersion {
            a: a.schema_version,
            b: b.schema_version,
        }]));
    }
    let mut mismatches = Vec::new();
    if a.scenario.name != b.scenario.name {
        mismatches.push(Mismatch::Scenario {
            a: a.scenario.name.clone(),
            b: b.scenario.name.clone(),
        });
    }
    if a.target.kind != b.target.kind {
        mismatches.push(Mismatch::TargetKind {
            a: a.target.kind.clone(),
            b: b.target.kind.clone(),
        });
    }
    let ea: BTreeSet<&String> = a.requests.keys().collect();
    let eb: BTreeSet<&String> = b.requests.keys().collect();
    if ea != eb {
        mismatches.push(Mismatch::Endpoints {
            only_a: ea.difference(&eb).map(|s| s.to_string()).collect(),
            only_b: eb.difference(&ea).map(|s| s.to_string()).collect(),
        });
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Incompatible(mismatches))
    }
}

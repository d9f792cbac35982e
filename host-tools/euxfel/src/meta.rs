//! The rules for reading a file's metadata and index (format version, train IDs and
//! their padding, validity flags, source lists and legacy names, INDEX first/count
//! and the legacy first/last/status form, timestamps, auxiliary sources), written
//! once over [`MetaReader`].
//!
//! Two readers implement it: the pure-Rust walk over the memory map ([`RawMeta`],
//! fast, handles the structures h5py and the DAQ write by default) and libhdf5
//! ([`H5File`], handles everything). A rule runs on the raw walk first; where that
//! walk answers [`MetaError::Unreadable`] it runs again on libhdf5
//! (see [`crate::file_access`]), so both give the same answer by construction.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::dtype::DType;
use super::error::Error;
use super::h5::H5File;
use super::rawh5::{Link, RawError, RawFile, RawType};

/// Why a reader gave no value.
#[derive(Debug)]
pub(crate) enum MetaError {
    /// The object does not exist.
    NotFound(String),
    /// This reader cannot answer (a structure the raw walk does not handle, or
    /// bytes it finds inconsistent): ask libhdf5.
    Unreadable,
    /// A definite error.
    Failed(Error),
}

impl From<Error> for MetaError {
    fn from(e: Error) -> Self {
        MetaError::Failed(e)
    }
}

pub(crate) type MetaResult<T> = std::result::Result<T, MetaError>;

/// What both readers can read of a file's metadata. Object paths are
/// '/'-separated, relative to the root group.
pub(crate) trait MetaReader {
    /// The file, for error messages.
    fn path(&self) -> &Path;
    /// The first `n` (all if `None`) values of a 1-D integer dataset, as u64
    /// (signed values sign-extended).
    fn read_ints(&self, object: &str, n: Option<usize>) -> MetaResult<Vec<u64>>;
    /// A 1-D (or scalar) string dataset.
    fn read_strings(&self, object: &str) -> MetaResult<Vec<String>>;
    /// The target of `object` if it is a soft link, `None` if it is not or does not exist.
    fn soft_link_target(&self, object: &str) -> MetaResult<Option<String>>;
    /// Names of a group's members.
    fn member_names(&self, group: &str) -> MetaResult<Vec<String>>;
    /// Element type and shape of a dataset.
    fn dtype_shape(&self, object: &str) -> MetaResult<(DType, Vec<usize>)>;
}

/// The raw walk over a file's map.
pub(crate) struct RawMeta<'a> {
    pub file: RawFile<'a>,
    pub path: &'a Path,
}

fn from_raw(e: RawError) -> MetaError {
    match e {
        RawError::NotFound(p) => MetaError::NotFound(p),
        RawError::Unsupported(_) | RawError::Corrupt(_) => MetaError::Unreadable,
    }
}

impl MetaReader for RawMeta<'_> {
    fn path(&self) -> &Path {
        self.path
    }
    fn read_ints(&self, object: &str, n: Option<usize>) -> MetaResult<Vec<u64>> {
        self.file
            .read_ints(object, n.map(|n| n as u64))
            .map_err(from_raw)
    }
    fn read_strings(&self, object: &str) -> MetaResult<Vec<String>> {
        self.file.read_strings(object).map_err(from_raw)
    }
    fn soft_link_target(&self, object: &str) -> MetaResult<Option<String>> {
        match self.file.link(object) {
            Ok(Link::Soft(t)) => Ok(Some(t)),
            Ok(Link::Hard(_)) | Err(RawError::NotFound(_)) => Ok(None),
            Err(e) => Err(from_raw(e)),
        }
    }
    fn member_names(&self, group: &str) -> MetaResult<Vec<String>> {
        let addr = self.file.resolve(group).map_err(from_raw)?;
        let members = self.file.members(addr).map_err(from_raw)?;
        Ok(members.into_keys().collect())
    }
    fn dtype_shape(&self, object: &str) -> MetaResult<(DType, Vec<usize>)> {
        let ds = self.file.dataset(object).map_err(from_raw)?;
        let dtype = match ds.dtype {
            RawType::Int { size, signed: true } => DType::Int(size),
            RawType::Int {
                size,
                signed: false,
            } => DType::UInt(size),
            RawType::Float { size } if size == 4 || size == 8 => DType::Float(size),
            RawType::FixedString { size } => DType::FixedStr(size),
            RawType::VlenString => DType::VlenStr,
            // Other float sizes; booleans are enums, which the walk leaves to libhdf5.
            RawType::Float { .. } => return Err(MetaError::Unreadable),
        };
        let shape = ds
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| MetaError::Unreadable)?;
        Ok((dtype, shape))
    }
}

impl H5File {
    fn require(&self, object: &str) -> MetaResult<()> {
        if self.has(object) {
            Ok(())
        } else {
            Err(MetaError::NotFound(object.into()))
        }
    }
}

impl MetaReader for H5File {
    fn path(&self) -> &Path {
        &self.path
    }
    fn read_ints(&self, object: &str, n: Option<usize>) -> MetaResult<Vec<u64>> {
        self.require(object)?;
        Ok(self.read_u64(object, n)?)
    }
    fn read_strings(&self, object: &str) -> MetaResult<Vec<String>> {
        self.require(object)?;
        Ok(H5File::read_strings(self, object)?)
    }
    fn soft_link_target(&self, object: &str) -> MetaResult<Option<String>> {
        Ok(h5util::soft_link_target(&self.h5, object))
    }
    fn member_names(&self, group: &str) -> MetaResult<Vec<String>> {
        self.require(group)?;
        self.group(group)?
            .member_names()
            .map_err(|e| MetaError::Failed(Error::h5(&self.path, group, e)))
    }
    fn dtype_shape(&self, object: &str) -> MetaResult<(DType, Vec<usize>)> {
        self.require(object)?;
        let ds = self.dataset(object)?;
        let dtype = DType::of_dataset(&ds).map_err(|e| Error::h5(&self.path, object, e))?;
        Ok((dtype, ds.shape()))
    }
}

/// Sources of a file: control names, instrument names (`device:pipeline`), and
/// legacy instrument name -> canonical name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    pub control: BTreeSet<String>,
    pub instrument: BTreeSet<String>,
    pub legacy: BTreeMap<String, String>,
}

/// What `FileAccess` reads when it opens a file.
pub(crate) struct OpenMeta {
    pub format_version: String,
    pub train_ids: Vec<u64>,
    pub flag: Vec<bool>,
    pub sources: Sources,
}

/// `METADATA/dataFormatVersion[0]`, or "0.5" when absent.
pub(crate) fn format_version(r: &dyn MetaReader) -> MetaResult<String> {
    const P: &str = "METADATA/dataFormatVersion";
    match r.read_strings(P) {
        Ok(v) => match v.first() {
            Some(s) => Ok(s.trim_end_matches('\0').to_string()),
            None => Err(Error::structure(r.path(), format!("{P} is empty")).into()),
        },
        Err(MetaError::NotFound(_)) => Ok("0.5".into()),
        Err(e) => Err(e),
    }
}

/// `INDEX/trainId` without its padding: zeros (trailing padding, and any zero)
/// are dropped, like EXtra-data's `tid[tid != 0]`.
fn train_ids(r: &dyn MetaReader) -> MetaResult<Vec<u64>> {
    let all = r.read_ints("INDEX/trainId", None)?;
    Ok(all.into_iter().filter(|&t| t != 0).collect())
}

/// The metadata read at open: format version, train IDs, validity flags, sources.
pub(crate) fn open_meta(r: &dyn MetaReader) -> MetaResult<OpenMeta> {
    let fv = format_version(r)?;
    let train_ids = train_ids(r)?;
    let sources = sources(r, &fv)?;
    let n = train_ids.len();
    let flag = if fv == "0.5" {
        guess_valid_trains(&train_ids)
    } else {
        let fl = r.read_ints("INDEX/flag", Some(n))?;
        if fl.len() < n {
            return Err(Error::structure(
                r.path(),
                format!("INDEX/flag has {} entries for {n} train IDs", fl.len()),
            )
            .into());
        }
        // Format 1.1 wrote the flag inverted.
        fl.iter().map(|&x| (x != 0) != (fv == "1.1")).collect()
    };
    Ok(OpenMeta {
        format_version: fv,
        train_ids,
        flag,
        sources,
    })
}

fn source_list_path(fv: &str) -> &'static str {
    if fv == "0.5" {
        "METADATA/dataSourceId"
    } else {
        "METADATA/dataSources/dataSourceId"
    }
}

/// Parse the source list (EXtra-data's `_read_data_sources`): empty padding entries
/// ignored, INSTRUMENT entries give `device:pipeline`, soft-linked instrument groups
/// are legacy names.
fn sources(r: &dyn MetaReader, fv: &str) -> MetaResult<Sources> {
    let ids = r.read_strings(source_list_path(fv))?;
    let mut s = Sources::default();
    for id in &ids {
        if id.is_empty() {
            continue;
        }
        let (category, h5_source) = id.split_once('/').unwrap_or((id.as_str(), ""));
        match category {
            "INSTRUMENT" => {
                let (device, chan_grp) = h5_source.split_once(':').unwrap_or((h5_source, ""));
                let chan = chan_grp.split_once('/').map_or(chan_grp, |(c, _)| c);
                let source = format!("{device}:{chan}");
                if !s.instrument.contains(&source) {
                    if let Some(target) = r.soft_link_target(&format!("INSTRUMENT/{source}"))? {
                        // '/INSTRUMENT/X/Y' -> 'X/Y'
                        let t = target.trim_start_matches('/');
                        let canon = t.split_once('/').map_or("", |(_, r)| r).to_string();
                        s.legacy.insert(source.clone(), canon);
                    }
                    s.instrument.insert(source);
                }
            }
            "CONTROL" => {
                s.control.insert(h5_source.to_string());
            }
            "Karabo_TimerServer" => {}
            other => {
                return Err(Error::UnknownCategory {
                    path: r.path().into(),
                    category: other.to_string(),
                    entry: id.clone(),
                }
                .into())
            }
        }
    }
    Ok(s)
}

/// Guess valid trains for format 0.5 (no INDEX/flag): at each non-increasing step,
/// invalidate whichever side needs fewer trains dropped (EXtra-data's rule).
pub(crate) fn guess_valid_trains(t: &[u64]) -> Vec<bool> {
    let mut flag = vec![true; t.len()];
    for ix in 0..t.len().saturating_sub(1) {
        if t[ix + 1] <= t[ix] {
            let before: Vec<bool> = t[..=ix].iter().map(|&x| x >= t[ix + 1]).collect();
            let after: Vec<bool> = t[ix + 1..].iter().map(|&x| x <= t[ix]).collect();
            let nb = before.iter().filter(|&&b| b).count();
            let na = after.iter().filter(|&&b| b).count();
            if nb < na {
                for (f, b) in flag[..=ix].iter_mut().zip(before) {
                    *f &= !b;
                }
            } else {
                for (f, a) in flag[ix + 1..].iter_mut().zip(after) {
                    *f &= !a;
                }
            }
        }
    }
    flag
}

/// `INDEX/<source>` or `INDEX/<source>/<group>` (control sources have no group).
fn index_base(source: &str, group: &str) -> String {
    if group.is_empty() {
        format!("INDEX/{source}")
    } else {
        format!("INDEX/{source}/{group}")
    }
}

/// `(first, count)` of a source's index group for the first `n` trains (the
/// file's trains without padding). The legacy `first/last/status` form gives
/// `count = (last - first + 1) * status`.
pub(crate) fn index(
    r: &dyn MetaReader,
    source: &str,
    group: &str,
    n: usize,
) -> MetaResult<(Vec<u64>, Vec<u64>)> {
    let base = index_base(source, group);
    let first = r.read_ints(&format!("{base}/first"), Some(n))?;
    let count = match r.read_ints(&format!("{base}/count"), Some(n)) {
        Ok(c) => c,
        Err(MetaError::NotFound(_)) => {
            let last = r.read_ints(&format!("{base}/last"), Some(n));
            let status = r.read_ints(&format!("{base}/status"), Some(n));
            match (last, status) {
                (Ok(last), Ok(status)) => first
                    .iter()
                    .zip(&last)
                    .zip(&status)
                    .map(|((&f, &l), &s)| l.wrapping_sub(f).wrapping_add(1).wrapping_mul(s))
                    .collect(),
                (Err(MetaError::NotFound(_)), _) | (_, Err(MetaError::NotFound(_))) => {
                    return Err(Error::structure(
                        r.path(),
                        format!("{base}: neither count nor last/status datasets"),
                    )
                    .into())
                }
                (Err(e), _) | (_, Err(e)) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    if first.len() < n || count.len() < n {
        return Err(Error::structure(
            r.path(),
            format!(
                "{base}: index has {} first / {} count entries for {n} trains",
                first.len(),
                count.len()
            ),
        )
        .into());
    }
    Ok((first, count))
}

/// Index groups of an instrument source: the members of `INDEX/<source>`.
pub(crate) fn index_groups(r: &dyn MetaReader, source: &str) -> MetaResult<BTreeSet<String>> {
    Ok(r.member_names(&index_base(source, ""))?
        .into_iter()
        .collect())
}

/// `INDEX/timestamp` of the file's trains (padding dropped as for train IDs), or
/// `None` if the file has none (format 0.5). Missing trailing entries read as 0.
pub(crate) fn timestamps(r: &dyn MetaReader) -> MetaResult<Option<Vec<u64>>> {
    let tids = r.read_ints("INDEX/trainId", None)?;
    let ts = match r.read_ints("INDEX/timestamp", None) {
        Ok(ts) => ts,
        Err(MetaError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(
        tids.iter()
            .zip(ts.iter().chain(std::iter::repeat(&0)))
            .filter(|(&t, _)| t != 0)
            .map(|(_, &s)| s)
            .collect(),
    ))
}

/// Auxiliary sources (`METADATA/auxiliarySources/<SECTION>`, format 2025+):
/// section -> source names (entry minus the section prefix and the index group).
pub(crate) fn auxiliary_sources(
    r: &dyn MetaReader,
) -> MetaResult<BTreeMap<String, BTreeSet<String>>> {
    const BASE: &str = "METADATA/auxiliarySources";
    let sections = match r.member_names(BASE) {
        Ok(s) => s,
        Err(MetaError::NotFound(_)) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut res = BTreeMap::new();
    for section in sections {
        let mut set = BTreeSet::new();
        for id in r.read_strings(&format!("{BASE}/{section}"))? {
            if id.is_empty() {
                continue;
            }
            let rest = id.get(section.len() + 1..).unwrap_or("");
            let src = rest.rsplit_once('/').map_or("", |(s, _)| s);
            set.insert(src.to_string());
        }
        res.insert(section, set);
    }
    Ok(res)
}

/// `(proposal, run)` from `METADATA/proposalNumber` and `METADATA/runNumber`.
pub(crate) fn run_ident(r: &dyn MetaReader) -> MetaResult<Option<(u64, u64)>> {
    let first = |p: &str| match r.read_ints(p, Some(1)) {
        Ok(v) => Ok(v.first().copied()),
        Err(MetaError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    };
    Ok(first("METADATA/proposalNumber")?.zip(first("METADATA/runNumber")?))
}

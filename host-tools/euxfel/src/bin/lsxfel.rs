//! lsxfel: summarise European XFEL data in files or folders, with the same
//! output and exit codes as EXtra-data's `lsxfel`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use euxfel::cli::RunLookup;
use euxfel::display::{info_into, InfoOptions};
use euxfel::{DataCollection, FileAccess, OpenOptions, RunDirectories, Warning};

#[derive(Parser, Debug)]
#[command(
    name = "lsxfel",
    about = "Summarise XFEL data in files or folders",
    after_help = "Exit codes: 0 listed; 1 a path could not be read as XFEL data, or the listing \
could not be written; 2 a path not found, or a usage error; 130 interrupted (Ctrl-C, SIGINT); \
143 terminated (SIGTERM: kill, a Slurm cancel or time limit). A second signal ends it at once."
)]
struct Args {
    /// Files/folders to look at (default: the current directory).
    #[arg(conflicts_with = "proposal")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    lookup: RunLookup,
    /// Filter the list of sources, with wildcard patterns like '*XGM/*:output' or
    /// partial matches like 'XGM'. Can be used more than once.
    #[arg(short = 's', long = "source")]
    source: Vec<String>,
    /// Show details on keys & data for specified sources. Wildcard patterns like
    /// '*XGM/*:output' are allowed, or partial matches for the source name like 'XGM'
    /// with no wildcards. Can be used more than once. Only used when inspecting a
    /// single run or file.
    #[arg(short = 'd', long = "detail")]
    detail: Vec<String>,
    /// Show data counts for instrument sources.
    #[arg(short = 'c', long = "counts")]
    counts: bool,
    /// Don't try to group similar source names; show each individually.
    #[arg(long = "no-group")]
    no_group: bool,
    /// Include the aggregator each source is saved in. Only used when inspecting a
    /// single run or file.
    #[arg(short = 'g', long = "aggregators")]
    aggregators: bool,
    /// Include auxiliary sources (REDUCTION, ERRATA) alongside regular sources. Only
    /// used when inspecting a single run or file.
    #[arg(short = 'x', long = "auxiliary")]
    auxiliary: bool,
    /// Neither read nor write the run map cache (karabo_data_map.json).
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// For one run or file: print a JSON description instead (train IDs and timestamps, sources,
    /// and per key dtype, shape, entry shape; per index group data counts).
    #[arg(long)]
    json: bool,
}

fn to_glob(p: &str) -> String {
    if p.contains(['*', '?', '[']) {
        p.to_string()
    } else {
        format!("*{p}*")
    }
}

fn basename(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Python's `os.path.basename` of a string path (empty after a trailing '/').
fn py_basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

struct Ctx {
    args: Args,
    out: String,
}

type Res<T> = Result<T, String>;

impl Ctx {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn opts(&self) -> OpenOptions {
        OpenOptions {
            use_cache: !self.args.no_cache,
            ..OpenOptions::default()
        }
    }

    fn dc_json(&mut self, dc: &DataCollection) -> Res<()> {
        let e = |e: euxfel::Error| e.to_string();
        let mut sources = serde_json::Map::new();
        for name in dc.all_sources() {
            let sd = dc.source(&name).map_err(e)?;
            let mut keys = serde_json::Map::new();
            for k in sd.keys(true).map_err(e)? {
                let kd = sd.key(&k).map_err(e)?;
                keys.insert(
                    k.clone(),
                    serde_json::json!({
                        "dtype": kd.dtype.numpy_name(),
                        "shape": kd.shape(),
                        "entry_shape": kd.entry_shape,
                    }),
                );
            }
            let mut counts = serde_json::Map::new();
            for g in sd.index_groups().map_err(e)? {
                counts.insert(
                    g.clone(),
                    serde_json::json!(sd.data_counts(Some(&g)).map_err(e)?),
                );
            }
            sources.insert(
                name.clone(),
                serde_json::json!({
                    "section": sd.section.as_str(),
                    "keys": keys,
                    "data_counts": counts,
                }),
            );
        }
        let v = serde_json::json!({
            "train_ids": *dc.train_ids,
            "train_timestamps": dc.train_timestamps().map_err(e)?,
            "control_sources": dc.control_sources(),
            "instrument_sources": dc.instrument_sources(),
            "legacy_sources": dc.legacy_sources(),
            "sources": sources,
        });
        self.out = v.to_string();
        self.out.push('\n');
        Ok(())
    }

    fn dc_info(&mut self, dc: &DataCollection) -> Res<()> {
        if self.args.json {
            return self.dc_json(dc);
        }
        let detail: Vec<String> = self.args.detail.iter().map(|p| to_glob(p)).collect();
        let src_pats: Vec<String> = if self.args.source.is_empty() {
            detail.clone()
        } else {
            self.args.source.iter().map(|p| to_glob(p)).collect()
        };
        let sel;
        let dcs = if !src_pats.is_empty() {
            let pats: Vec<(String, String)> = src_pats
                .iter()
                .map(|p| (p.clone(), "*".to_string()))
                .collect();
            // EXtra-data exits with the error message (exit status 1).
            sel = dc
                .select(&pats, false, false)
                .map_err(|e| format!("EXIT1:{}", python_msg(&e)))?;
            self.line(&format!(
                "Showing {} / {} sources",
                sel.all_sources().len(),
                dc.all_sources().len()
            ));
            &sel
        } else {
            dc
        };
        self.line("");
        let mut warnings = Vec::new();
        let r = info_into(
            dcs,
            &InfoOptions {
                details_for_sources: detail,
                counts: self.args.counts,
                group_sources: !self.args.no_group,
                with_aggregators: self.args.aggregators,
                with_auxiliary: self.args.auxiliary,
            },
            &mut self.out,
            &mut warnings,
        );
        print_warnings(&warnings);
        r.map_err(|e| e.to_string())
    }

    /// One run summary line, trains counted from the shortest group of sequence files.
    fn summarise_run(&mut self, path: &Path, indent: &str) -> Res<()> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let (mut n_det, mut n_other) = (0, 0);
        for f in &names {
            if let Some(prefix) = segment_prefix(f) {
                if !groups.contains_key(&prefix) {
                    order.push(prefix.clone());
                }
                groups.entry(prefix).or_default().push(f.clone());
                match is_detector_file(f) {
                    Some(true) => n_det += 1,
                    Some(false) => n_other += 1,
                    None => {
                        return Err(format!(
                            "{}: unexpected data file name {f:?}",
                            path.display()
                        ))
                    }
                }
            }
        }
        if groups.is_empty() {
            return Err(format!("No data files recognised in {}", path.display()));
        }
        // sorted(values, key=len)[0]: the first shortest in insertion order.
        let mut first: Option<&Vec<String>> = None;
        for k in &order {
            let g = &groups[k];
            if first.is_none_or(|f| g.len() < f.len()) {
                first = Some(g);
            }
        }
        let mut tids = BTreeSet::new();
        for f in first.into_iter().flatten() {
            let fa = FileAccess::open(path.join(f)).map_err(|e| e.to_string())?;
            tids.extend(fa.train_ids.iter().copied());
        }
        self.line(&format!(
            "{indent}{} : Run of {:>4} trains, with {:>3} detector files and {:>3} others",
            basename(path),
            tids.len(),
            n_det,
            n_other
        ));
        Ok(())
    }

    /// A run of several locations (`--data default` or `all` with raw and proc): one
    /// collection, as `open_run` returns it.
    fn merged_run(&mut self, dirs: &RunDirectories) -> Res<u8> {
        let found = dirs.found();
        let run = found.first().map(|o| basename(&o.dir)).unwrap_or_default();
        let locations: Vec<&str> = found.iter().map(|o| o.location.as_str()).collect();
        self.line(&format!(
            "{run} : Run directories {} (merged, later ones win)",
            locations.join(", ")
        ));
        let dc = dirs.open(&self.opts()).map_err(|e| {
            print_warnings(&e.skipped_files());
            e.to_string()
        })?;
        print_warnings(dc.warnings());
        self.dc_info(&dc)?;
        std::mem::forget(dc);
        Ok(0)
    }

    fn run(&mut self) -> Res<u8> {
        if let Some(dirs) = self.args.lookup.directories().map_err(|e| e.to_string())? {
            for w in dirs.missing() {
                eprintln!("{w}");
            }
            match dirs.found().as_slice() {
                // One directory: listed as that path would be.
                [one] => self.args.paths = vec![one.dir.clone()],
                _ => return self.merged_run(&dirs),
            }
        }
        let paths: Vec<String> = if self.args.paths.is_empty() {
            vec![std::env::current_dir()
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .into_owned()]
        } else {
            self.args
                .paths
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        };
        if paths.len() == 1 {
            let ps = &paths[0];
            let path = Path::new(ps);
            let trimmed = ps.trim_end_matches('/');
            let abs = std::path::absolute(if trimmed.is_empty() { "/" } else { trimmed })
                .map_err(|e| e.to_string())?;
            let base = basename(&abs);
            if path.is_dir() {
                let contents = sorted_listing(path)?;
                if contents.iter().any(|f| f.ends_with(".h5")) {
                    self.line(&format!("{base} : Run directory"));
                    let dc = DataCollection::open_run(path, &self.opts()).map_err(|e| {
                        print_warnings(&e.skipped_files());
                        e.to_string()
                    })?;
                    print_warnings(dc.warnings());
                    self.dc_info(&dc)?;
                    // The process ends after the listing: at exit the kernel releases
                    // every file's map in one pass, cheaper than unmapping and freeing
                    // hundreds of them one by one here.
                    std::mem::forget(dc);
                } else if contents.iter().any(|f| is_run_name(f)) {
                    self.line(&format!("{base} : Proposal data directory"));
                    self.line("");
                    for f in &contents {
                        let child = path.join(f);
                        if is_run_name(f) && child.is_dir() {
                            self.summarise_run(&child, "  ")?;
                        }
                    }
                } else if path.join("raw").is_dir() {
                    self.line(&format!("{base} : Proposal directory"));
                    self.line("");
                    self.line(&format!("{base}/raw/"));
                    for f in sorted_listing(&path.join("raw"))? {
                        let child = path.join("raw").join(&f);
                        if is_run_name(&f) && child.is_dir() {
                            self.summarise_run(&child, "  ")?;
                        }
                    }
                } else {
                    self.line(&format!("{base} : Unrecognised directory"));
                }
            } else if path.is_file() {
                if ps.ends_with(".h5") {
                    self.line(&format!("{base} : Data file"));
                    let dc = DataCollection::open_file(path).map_err(|e| e.to_string())?;
                    self.dc_info(&dc)?;
                } else {
                    self.line(&format!("{base} : Unrecognised file"));
                    return Ok(2);
                }
            } else {
                self.line(&format!("{ps} : File/folder not found"));
                return Ok(2);
            }
            Ok(0)
        } else {
            let mut code = 0;
            for ps in &paths {
                let path = Path::new(ps);
                let base = py_basename(ps).to_string();
                if path.is_dir() {
                    let contents = sorted_listing(path)?;
                    if contents.iter().any(|f| f.ends_with(".h5")) {
                        self.summarise_run(path, "")?;
                    } else if contents.iter().any(|f| is_run_name(f)) {
                        self.line(&format!("{base} : Proposal directory"));
                        self.line("");
                        for f in &contents {
                            let child = path.join(f);
                            if is_run_name(f) && child.is_dir() {
                                self.summarise_run(&child, "  ")?;
                            }
                        }
                    } else {
                        self.line(&format!("{base} : Unrecognised directory"));
                        code = 2;
                    }
                } else if path.is_file() {
                    if ps.ends_with(".h5") {
                        self.line(&format!("{base} : Data file"));
                        let fa = FileAccess::open(path).map_err(|e| e.to_string())?;
                        self.line(&format!(
                            "  {} trains, {} sources",
                            fa.train_ids.len(),
                            fa.all_sources().len()
                        ));
                    } else {
                        self.line(&format!("{base} : Unrecognised file"));
                        code = 2;
                    }
                } else {
                    self.line(&format!("{ps} : File/folder not found"));
                    code = 2;
                }
            }
            Ok(code)
        }
    }
}

fn print_warnings(warnings: &[Warning]) {
    for w in warnings {
        eprintln!("{w}");
    }
}

/// EXtra-data's message for a selection with no match.
fn python_msg(e: &euxfel::Error) -> String {
    match e {
        euxfel::Error::NoMatch {
            source_glob,
            key_glob,
        } => format!("No matches for pattern ('{source_glob}', '{key_glob}')"),
        other => other.to_string(),
    }
}

fn sorted_listing(p: &Path) -> Res<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    v.sort();
    Ok(v)
}

/// `re.match(r'r\d+', f)`.
fn is_run_name(f: &str) -> bool {
    let b = f.as_bytes();
    b.len() >= 2 && b[0] == b'r' && b[1].is_ascii_digit()
}

/// `re.match(r'(.+)-S\d+\.h5', f)` -> group 1 (greedy, so the last matching '-S').
fn segment_prefix(f: &str) -> Option<String> {
    let mut best = None;
    for (i, _) in f.match_indices("-S") {
        if i == 0 {
            continue;
        }
        let rest = &f.as_bytes()[i + 2..];
        let nd = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if nd > 0 && rest.len() >= nd + 3 && &rest[nd..nd + 3] == b".h5" {
            best = Some(f[..i].to_string());
        }
    }
    best
}

/// FilenameInfo(f).is_detector; None if the name does not have 4 '-' parts.
fn is_detector_file(f: &str) -> Option<bool> {
    let stem = &f[..f.len().saturating_sub(3)];
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.len() != 4 {
        return None;
    }
    let ds = parts[2];
    let nl = ds.bytes().take_while(|c| c.is_ascii_uppercase()).count();
    let nd = ds[nl..].bytes().take_while(|c| c.is_ascii_digit()).count();
    Some(nl > 0 && nd > 0 && ["AGIPD", "DSSC", "LPD"].contains(&&ds[..nl]))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = euxfel::catch_interrupt() {
        eprintln!("lsxfel: Ctrl-C and SIGTERM will end the process at once: {e}");
    }
    let mut ctx = Ctx {
        args,
        out: String::new(),
    };
    let r = ctx.run();
    if let Some(sig) = euxfel::stop_signal() {
        // A listing cut short is not printed.
        eprintln!("lsxfel: {}", sig.verb());
        return ExitCode::from(sig.exit_code());
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(ctx.out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A listing that did not reach its reader (a full disk) never ends with exit 0; a
        // reader that left (`| head`) needs no message.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("lsxfel: cannot write the listing: {e}");
        }
        return ExitCode::from(1);
    }
    match r {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            let msg = e.strip_prefix("EXIT1:").unwrap_or(&e);
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}

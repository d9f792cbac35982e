//! `DataCollection::info()` / `lsxfel` output, line for line as EXtra-data prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::data_collection::DataCollection;
use super::error::Result;
use super::fnmatch::Pattern;
use super::names::detector_source_match;
use super::source_data::SourceData;
use super::warning::Warning;

/// Options of [`info`].
#[derive(Debug, Clone, Default)]
pub struct InfoOptions {
    /// Glob patterns of sources to show details for.
    pub details_for_sources: Vec<String>,
    pub counts: bool,
    pub group_sources: bool,
    pub with_aggregators: bool,
    /// List auxiliary (REDUCTION, ERRATA) sources at the end.
    pub with_auxiliary: bool,
}

/// Python's `str(timedelta(seconds=s))`.
fn timedelta_str(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    let hms = format!("{}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        d => format!("{d} days, {hms}"),
    }
}

/// Python's `tuple.__repr__` for a shape.
pub(crate) fn shape_repr(shape: &[usize]) -> String {
    match shape.len() {
        0 => "()".into(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Render the info text, and the warnings met on the way.
pub fn info(dc: &DataCollection, opts: &InfoOptions) -> Result<(String, Vec<Warning>)> {
    let mut out = String::new();
    let mut warnings = Vec::new();
    info_into(dc, opts, &mut out, &mut warnings)?;
    Ok((out, warnings))
}

/// Render the info text into `out` and the warnings met on the way into `warnings`;
/// on error, both hold what came before it (EXtra-data prints line by line, so a
/// failure leaves the same partial output).
pub fn info_into(
    dc: &DataCollection,
    opts: &InfoOptions,
    out: &mut String,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    let detail_pats: Vec<Pattern> = opts
        .details_for_sources
        .iter()
        .map(|p| Pattern::new(p))
        .collect();
    let group_sources = opts.group_sources && !(opts.with_aggregators || opts.counts);
    let show_detail = |s: &str| detail_pats.iter().any(|p| p.matches(s));

    // Trains.
    let n = dc.train_ids.len();
    let (first, last, span) = if n == 0 {
        ("-".to_string(), "-".to_string(), "0.0".to_string())
    } else {
        let f = dc.train_ids[0];
        let l = dc.train_ids[n - 1];
        let d = (l as u128).wrapping_sub(f as u128).wrapping_add(1);
        let span = if l < f || d / 10 > 999_999_999u128 * 86400 {
            "OverflowError (one or more train IDs are probably wrong)".to_string()
        } else {
            format!("{}.{}", timedelta_str((d / 10) as u64), d % 10)
        };
        (f.to_string(), l.to_string(), span)
    };
    writeln!(out, "# of trains:    {n}").ok();
    writeln!(out, "Duration:       {span}").ok();
    writeln!(out, "First train ID: {first}").ok();
    writeln!(out, "Last train ID:  {last}").ok();
    writeln!(out).ok();

    let legacy = dc.legacy_sources();
    let detector_sources = dc.detector_sources();
    if detail_pats.is_empty() && !opts.counts {
        // XTDF detectors, grouped by detector name.
        let mut by_det: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for s in &detector_sources {
            if let Some((name, modno)) = detector_source_match(s) {
                by_det.entry(name).or_default().insert(modno, s.clone());
            }
        }
        for (det, mods) in &by_det {
            writeln!(out, "{} XTDF detector modules of {det}/*", mods.len()).ok();
            if let Some((modno, src)) = mods.iter().next() {
                let info = dc.detector_info(src)?;
                if info.frame_counts.len() > 1 {
                    warnings.push(Warning::VaryingFramesPerTrain {
                        source_name: src.clone(),
                        counts: info.frame_counts.clone(),
                    });
                }
                let (fpt, total) = (info.frames_per_train, info.total_frames);
                let dims_s = info
                    .dims
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" x ");
                writeln!(out, "  e.g. module {modno} : {dims_s} pixels").ok();
                writeln!(out, "  {src}").ok();
                writeln!(out, "  {fpt} frames per train, up to {total} frames total").ok();
            }
            writeln!(out).ok();
        }
    }

    // Instrument sources.
    let inst: BTreeSet<String> = if !detail_pats.is_empty() || opts.counts {
        let s: BTreeSet<String> = dc
            .instrument_sources()
            .into_iter()
            .filter(|s| !legacy.contains_key(s))
            .collect();
        writeln!(out, "{} instrument sources:", s.len()).ok();
        s
    } else {
        let s: BTreeSet<String> = dc
            .instrument_sources()
            .into_iter()
            .filter(|s| !legacy.contains_key(s) && !detector_sources.contains(s))
            .collect();
        writeln!(
            out,
            "{} instrument sources (excluding XTDF detectors):",
            s.len()
        )
        .ok();
        s
    };
    list_sources(dc, &inst, out, group_sources, opts, &show_detail, true)?;
    writeln!(out).ok();

    let ctrl = dc.control_sources();
    writeln!(out, "{} control sources:", ctrl.len()).ok();
    list_sources(dc, &ctrl, out, group_sources, opts, &show_detail, false)?;
    writeln!(out).ok();

    if !legacy.is_empty() {
        writeln!(out, "{} legacy source names:", legacy.len()).ok();
        let mut det_legacy: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut det_order: Vec<String> = Vec::new();
        for (s, canon) in &legacy {
            match detector_source_match(s) {
                Some((d, _)) => {
                    if !det_legacy.contains_key(&d) {
                        det_order.push(d.clone());
                    }
                    det_legacy.entry(d).or_default().push(s.clone());
                }
                None => {
                    writeln!(out, " - {s} -> {canon}").ok();
                }
            }
        }
        for d in det_order {
            let srcs = &det_legacy[&d];
            let canon_mod = &legacy[&srcs[0]];
            let canon_det = detector_source_match(canon_mod)
                .map(|x| x.0)
                .unwrap_or_default();
            writeln!(out, " - {d}/* -> {canon_det}/* ({})", srcs.len()).ok();
        }
        writeln!(out).ok();
    }
    if opts.with_auxiliary {
        let aux = dc.auxiliary_sources()?;
        for (n, (label, section)) in [("reduction", "REDUCTION"), ("errata", "ERRATA")]
            .into_iter()
            .enumerate()
        {
            if n > 0 {
                writeln!(out).ok();
            }
            let empty = BTreeMap::new();
            let srcs = aux.get(section).unwrap_or(&empty);
            writeln!(out, "{} {label} sources:", srcs.len()).ok();
            for (s, agg) in srcs {
                // EXtra-data prints '  - {agg_str} {s}': two spaces without aggregators.
                let agg_str = if opts.with_aggregators {
                    format!(" [{agg}]")
                } else {
                    String::new()
                };
                writeln!(out, "  - {agg_str} {s}").ok();
            }
        }
    }
    Ok(())
}

fn list_sources(
    dc: &DataCollection,
    srcs: &BTreeSet<String>,
    out: &mut String,
    group_sources: bool,
    opts: &InfoOptions,
    show_detail: &dyn Fn(&str) -> bool,
    instrument: bool,
) -> Result<()> {
    let mut group = SourceGroup::default();
    for s in srcs {
        // Details of a big run read every key's index: Ctrl-C is noticed per source.
        crate::interrupt::check()?;
        let detail = show_detail(s);
        let solo = !group_sources || detail;
        if solo {
            if !group.entries.is_empty() {
                writeln!(out, "  - {}", group.render()).ok();
                group = SourceGroup::default();
            }
            let agg = if opts.with_aggregators {
                format!(
                    " [{}]",
                    dc.source(s)?.aggregator().unwrap_or_else(|| "None".into())
                )
            } else {
                String::new()
            };
            // EXtra-data prints an alias list after the name; with no aliases that
            // leaves a trailing space.
            writeln!(out, "  -{agg} {s} ").ok();
            let sd = dc.source(s)?;
            if detail {
                if instrument {
                    inst_detail(dc, sd, out)?;
                } else {
                    ctrl_detail(sd, out)?;
                }
            } else if instrument && opts.counts {
                inst_data(sd, out)?;
            }
        } else if !group.add(s) {
            writeln!(out, "  - {}", group.render()).ok();
            group = SourceGroup::default();
            group.add(s);
        }
    }
    if !group.entries.is_empty() {
        writeln!(out, "  - {}", group.render()).ok();
    }
    Ok(())
}

/// Python `'{:.2%}'` of a fraction.
fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn src_data_detail(sd: &SourceData, group: &str) -> Result<String> {
    let counts: Vec<u64> = sd
        .data_counts(Some(group))?
        .into_iter()
        .filter(|&c| c > 0)
        .collect();
    let nt = counts.len();
    let (cmin, cmax) = if nt > 0 {
        (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        )
    } else {
        (0, 0)
    };
    let range = if cmin == cmax {
        format!("{cmin}")
    } else {
        format!("{cmin}\u{2013}{cmax}")
    };
    let ntr = sd.train_ids.len();
    let frac = if ntr == 0 {
        // EXtra-data divides by zero here (ZeroDivisionError); we print nan like numpy would.
        "nan%".to_string()
    } else {
        pct(nt as f64 / ntr as f64)
    };
    Ok(format!(
        "data for {nt} trains ({frac}), {range} entries per train"
    ))
}

fn inst_data(sd: &SourceData, out: &mut String) -> Result<()> {
    let groups = sd.index_groups()?;
    if groups.len() == 1 {
        let g = groups.iter().next().cloned().unwrap_or_default();
        writeln!(out, "    {}", src_data_detail(sd, &g)?).ok();
    } else {
        for g in &groups {
            writeln!(out, "    {g}: {}", src_data_detail(sd, g)?).ok();
        }
    }
    Ok(())
}

fn key_line(sd: &SourceData, k: &str) -> Result<String> {
    let kd = sd.key(k)?;
    let entry = if kd.entry_shape.is_empty() {
        String::new()
    } else {
        format!(", entry shape {}", shape_repr(&kd.entry_shape))
    };
    Ok(format!("- {k}\t[{}{entry}]", kd.dtype.numpy_name()))
}

fn inst_detail(_dc: &DataCollection, sd: &SourceData, out: &mut String) -> Result<()> {
    let keys = sd.keys(true)?;
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in keys {
        let g = k.split('.').next().unwrap_or("").to_string();
        by_group.entry(g).or_default().push(k);
    }
    // groupby over sorted keys: groups appear in the order of the first key of each.
    let mut order: Vec<(String, Vec<String>)> = by_group.into_iter().collect();
    order.sort_by(|a, b| a.1[0].cmp(&b.1[0]));
    for (g, ks) in order {
        writeln!(out, "    - {g}:").ok();
        writeln!(out, "      {}", src_data_detail(sd, &g)?).ok();
        for k in ks {
            writeln!(out, "      {}", key_line(sd, &k)?).ok();
        }
    }
    Ok(())
}

fn ctrl_detail(sd: &SourceData, out: &mut String) -> Result<()> {
    writeln!(out, "    - Control keys (1 entry per train):").ok();
    let keys = sd.keys(false)?;
    for k in &keys {
        writeln!(out, "      {}", key_line(sd, k)?).ok();
    }
    let run = sd.run_entries(false)?;
    let mut lines = Vec::new();
    for (k, (dtype, shape)) in &run {
        if keys.contains(k) {
            continue;
        }
        // The value is ds[0]: a string, a scalar (shape ()) or an array of shape[1:].
        let (dt, entry) = if dtype.is_string() {
            ("string".to_string(), Vec::new())
        } else {
            (
                dtype.numpy_name(),
                shape.get(1..).map(|s| s.to_vec()).unwrap_or_default(),
            )
        };
        let e = if entry.is_empty() {
            String::new()
        } else {
            format!(", entry shape {}", shape_repr(&entry))
        };
        lines.push(format!("- {k}\t[{dt}{e}]"));
    }
    if !lines.is_empty() {
        writeln!(out, "    - Additional run keys (1 entry per run):").ok();
        for l in lines {
            writeln!(out, "      {l}").ok();
        }
    }
    Ok(())
}

/// Split like `re.split(r"(\d+|[a-zA-Z]+)", s)`: separators at even positions,
/// name/number pieces at odd positions.
fn piece_split(s: &str) -> Vec<String> {
    let mut res = vec![String::new()];
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_ascii_digit() || ch.is_ascii_alphabetic() {
            let digit = ch.is_ascii_digit();
            let mut j = i;
            while j < c.len()
                && (if digit {
                    c[j].is_ascii_digit()
                } else {
                    c[j].is_ascii_alphabetic()
                })
            {
                j += 1;
            }
            res.push(c[i..j].iter().collect());
            res.push(String::new());
            i = j;
        } else {
            if let Some(last) = res.last_mut() {
                last.push(ch);
            }
            i += 1;
        }
    }
    res
}

/// Grouping of similar source names (EXtra-data's `SourceGroup`).
#[derive(Debug, Default)]
struct SourceGroup {
    entries: Vec<Vec<String>>,
}

impl SourceGroup {
    fn split_name(name: &str) -> Vec<String> {
        let mut components: Vec<String> = name.split('/').map(str::to_string).collect();
        let lastc = components.pop().unwrap_or_default();
        let (last, pipeline) = match lastc.split_once(':') {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => (lastc.clone(), String::new()),
        };
        components.push(last);
        let mut res = piece_split(&components[0]);
        for c in &components[1..] {
            let parts = piece_split(c);
            let head = parts[0].clone();
            let tail = &parts[1..];
            if let Some(l) = res.last_mut() {
                l.push('/');
                l.push_str(&head);
            }
            if tail.is_empty() {
                // component empty or only a separator
            } else if tail.len() == 2 && tail[1].is_empty() {
                let s = &tail[0];
                if s.chars().count() <= 2 || s.chars().all(|c| c.is_ascii_digit()) {
                    res.extend(tail.iter().cloned());
                } else if let Some(l) = res.last_mut() {
                    l.push_str(s);
                }
            } else {
                res.extend(tail.iter().cloned());
            }
        }
        if !pipeline.is_empty() {
            let parts = piece_split(&pipeline);
            if let Some(l) = res.last_mut() {
                l.push(':');
                l.push_str(&parts[0]);
            }
            res.extend(parts[1..].iter().cloned());
        }
        res
    }

    /// Try to add a name; false if it does not fit the group.
    fn add(&mut self, name: &str) -> bool {
        let split = Self::split_name(name);
        if self.entries.is_empty() {
            self.entries.push(split);
            return true;
        }
        if split.len() != self.entries[0].len() {
            return false;
        }
        let lastg = &self.entries[self.entries.len() - 1];
        let diffs: Vec<usize> = lastg
            .iter()
            .zip(&split)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect();
        if diffs.len() != 1 || diffs[0] % 2 == 0 {
            return false;
        }
        let d = diffs[0];
        if self.entries.len() > 2 && lastg[d] == self.entries[0][d] {
            return false;
        }
        self.entries.push(split);
        true
    }

    fn is_numeric(&self) -> bool {
        let e = &self.entries;
        if e.len() < 2 {
            return false;
        }
        let Some(d) = e[0].iter().zip(&e[1]).position(|(a, b)| a != b) else {
            return false;
        };
        e.iter()
            .all(|p| !p[d].is_empty() && p[d].chars().all(|c| c.is_ascii_digit()))
    }

    fn num_ranges(parts: &BTreeSet<String>) -> Vec<String> {
        let mut pl: Vec<(u128, &String)> = parts
            .iter()
            .map(|p| (p.parse::<u128>().unwrap_or(u128::MAX), p))
            .collect();
        // Python's sorted() is stable; ties in int value keep set iteration order.
        pl.sort_by_key(|x| x.0);
        let mut ranges: Vec<(String, String)> = Vec::new();
        for (v, p) in pl {
            match ranges.last_mut() {
                Some(r) if r.1.parse::<u128>().map(|x| x + 1 == v).unwrap_or(false) => {
                    r.1 = p.clone();
                }
                _ => ranges.push((p.clone(), p.clone())),
            }
        }
        ranges
            .into_iter()
            .map(|(a, b)| if a == b { a } else { format!("{a}-{b}") })
            .collect()
    }

    /// The group as one line, e.g. `SA3_XTD10_IMGFEL/CAM/BEAMVIEW{2-3}:daqOutput`.
    fn render(&self) -> String {
        let mut res = String::new();
        let n = self.entries.first().map_or(0, Vec::len);
        for i in 0..n {
            let ps: BTreeSet<String> = self.entries.iter().map(|e| e[i].clone()).collect();
            if ps.len() == 1 {
                res.push_str(ps.iter().next().map_or("", String::as_str));
            } else {
                let pl: Vec<String> = if self.is_numeric() {
                    Self::num_ranges(&ps)
                } else {
                    ps.into_iter().collect()
                };
                res.push('{');
                res.push_str(&pl.join(", "));
                res.push('}');
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_like_python() {
        assert_eq!(
            SourceGroup::split_name("SA3_XTD10_VAC/TSENS/S30100K"),
            vec![
                "", "SA", "", "3", "_", "XTD", "", "10", "_", "VAC", "/TSENS/", "S", "", "30100",
                "", "K", ""
            ]
        );
    }

    #[test]
    fn groups() {
        let mut g = SourceGroup::default();
        assert!(g.add("SA3_XTD10_IMGFEL/CAM/BEAMVIEW2:daqOutput"));
        assert!(g.add("SA3_XTD10_IMGFEL/CAM/BEAMVIEW3:daqOutput"));
        assert_eq!(g.render(), "SA3_XTD10_IMGFEL/CAM/BEAMVIEW{2-3}:daqOutput");
        let mut g = SourceGroup::default();
        assert!(g.add("SA3_XTD10_MCP/ADC/1:channel_3.output"));
        assert!(g.add("SA3_XTD10_MCP/ADC/1:channel_5.output"));
        assert!(g.add("SA3_XTD10_MCP/ADC/1:channel_9.output"));
        assert_eq!(g.render(), "SA3_XTD10_MCP/ADC/1:channel_{3, 5, 9}.output");
    }

    #[test]
    fn timedelta() {
        assert_eq!(timedelta_str(48), "0:00:48");
        assert_eq!(timedelta_str(86400 + 3661), "1 day, 1:01:01");
        assert_eq!(timedelta_str(2 * 86400), "2 days, 0:00:00");
    }
}

//! The virtual CXI file of `extra-data-make-virtual-cxi` / `det.write_virtual_cxi()`:
//! `cxi_version`, `entry_1/{experiment_identifier, pulseId|memoryCell, trainId, cellId}`,
//! `entry_1/instrument_1/detector_1/{data, gain, mask, module_identifier}` as virtual
//! datasets of shape `(frames, modules, ...)` mapping the run's files, soft links
//! `data_1`, `experiment_identifier`, `data_gain`, created with HDF5 1.10 format bounds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use euxfel::DType;
use hdf5::types::VarLenUnicode;
use hdf5::{Group, H5Type};

use crate::detector::DetectorType;
use crate::error::{Error, Result};
use crate::fill::FillValue;
use crate::multimod::MultiModDetector;

/// One mapping of a virtual dataset: a block of a source dataset onto a block of the
/// virtual one, `(start, length)` per dimension.
struct VirtualMapping {
    file: String,
    dataset: String,
    src_shape: Vec<u64>,
    src_block: Vec<(u64, u64)>,
    vds_block: Vec<(u64, u64)>,
}

/// One virtual dataset to write.
struct Layout {
    dtype: DType,
    shape: Vec<usize>,
    maps: Vec<VirtualMapping>,
}

/// What was written, for the command's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CxiSummary {
    pub frames: usize,
    pub modules: usize,
    /// Virtual dataset name -> (shape, mappings).
    pub datasets: BTreeMap<String, (Vec<usize>, usize)>,
}

/// Writes the virtual CXI file for `det` (overwriting `path`). `fill_values` maps `data`,
/// `gain`, `mask` (JUNGFRAU's data is labelled `adc`, as in EXtra-data) to the value of
/// missing data; defaults NaN (float data) or 0, gain 0, mask 0xffffffff.
pub fn write_virtual_cxi(
    det: &MultiModDetector,
    path: &Path,
    fill_values: &BTreeMap<String, FillValue>,
) -> Result<CxiSummary> {
    let main = det.kind.main_data_key();
    let (group_label, image_label) = main.split_once('.').unwrap_or(("image", "data"));
    let jungfrau = det.kind == DetectorType::Jungfrau;
    let (pulse_label, cell_label) = if jungfrau {
        ("memoryCell", "memoryCell")
    } else {
        ("pulseId", "cellId")
    };
    let cells = det.frames_per_entry() as usize;
    let nmodules = det.n_modules;
    let start_at = det.kind.modnos_start_at();
    let mut tids = Vec::new();
    for (&t, &c) in det.train_ids().iter().zip(det.frame_counts()) {
        tids.extend(std::iter::repeat_n(t, c as usize * cells));
    }
    let nframes = tids.len();

    // Pulse (JUNGFRAU: memory cell) IDs, checked to agree across modules.
    let pulse_ids = det
        .key(&format!("{group_label}.{pulse_label}"))?
        .inner_ids_flat()?;
    let experiment_ids: Vec<VarLenUnicode> = tids
        .iter()
        .zip(&pulse_ids)
        .map(|(t, p)| format!("{t}:{p}").parse().unwrap_or_default())
        .collect();

    // Which datasets: corrected data has gain (and maybe mask) beside the image data.
    let src0 = det
        .source_to_modno
        .keys()
        .next()
        .ok_or_else(|| Error::NoSources(det.detector_name.clone()))?;
    let sd = det.data.source(src0)?;
    let corrected = sd.has_key(&format!("{group_label}.gain"))?;
    let (ms, mf) = det.kind.module_shape();
    let mut names: Vec<&str> = vec![image_label];
    if corrected || jungfrau {
        names.push("gain");
        if sd.has_key(&format!("{group_label}.mask"))? {
            names.push("mask");
        }
    }
    let mut layouts: BTreeMap<String, Layout> = BTreeMap::new();
    for name in names.iter().copied().chain([cell_label]) {
        let key = det.key(&format!("{group_label}.{name}"))?;
        let mut shape = vec![nframes, nmodules];
        if name != cell_label {
            if corrected || jungfrau {
                shape.extend([ms, mf]);
            } else {
                shape.extend(det.data.key(src0, &key.key)?.entry_shape);
            }
        }
        let mut maps = Vec::new();
        for (modno, spans) in key.module_mappings()? {
            let ix = modno
                .checked_sub(start_at)
                .filter(|&i| i < nmodules)
                .ok_or(Error::ModuleOutOfRange {
                    module: modno as i64,
                    modules: nmodules,
                })?;
            for (span, mappings) in spans {
                let src_shape = span.dataset_shape()?;
                let file = std::path::absolute(&span.file.path)
                    .unwrap_or_else(|_| span.file.path.clone())
                    .to_string_lossy()
                    .into_owned();
                for (src, t, n) in mappings {
                    let drop_one = cells == 1 && src_shape.len() > 1 && src_shape[1] == 1;
                    let mut src_block = vec![(src, n as u64)];
                    for (d, &len) in src_shape.iter().enumerate().skip(1) {
                        src_block.push(if d == 1 && drop_one {
                            (0, 1)
                        } else {
                            (0, len as u64)
                        });
                    }
                    let mut vds_block =
                        vec![((t * cells) as u64, (n * cells) as u64), (ix as u64, 1)];
                    vds_block.extend(shape[2..].iter().map(|&l| (0, l as u64)));
                    maps.push(VirtualMapping {
                        file: file.clone(),
                        dataset: span.dataset.clone(),
                        src_shape: src_shape.iter().map(|&d| d as u64).collect(),
                        src_block,
                        vds_block,
                    });
                }
            }
        }
        layouts.insert(
            name.to_string(),
            Layout {
                dtype: key.dtype()?,
                shape,
                maps,
            },
        );
    }

    refuse_source_as_output(det, path)?;
    let contents = Contents {
        det,
        tids: &tids,
        pulse_ids: &pulse_ids,
        experiment_ids: &experiment_ids,
        pulse_label,
        cell_label,
        image_label,
        layouts: &layouts,
        fill_values,
    };
    // Written under a temporary name and renamed once closed without error: a failed write
    // (a full disk, often noticed only when libhdf5 flushes its metadata at the close) leaves
    // no file at `path` looking complete, and an earlier file there stays until replaced.
    let partial = partial_path(path);
    let written = write_partial(&partial, path, &contents).and_then(|summary| {
        // A command that catches Ctrl-C (euxfel::catch_interrupt) writes nothing after it.
        if euxfel::interrupted() {
            return Err(euxfel::Error::Interrupted.into());
        }
        std::fs::rename(&partial, path)
            .map_err(|e| Error::h5(path, "renaming the complete file into place", e))?;
        Ok(summary)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// What goes into the file, worked out from the run before it is created.
struct Contents<'a> {
    det: &'a MultiModDetector,
    tids: &'a [u64],
    pulse_ids: &'a [u64],
    experiment_ids: &'a [VarLenUnicode],
    pulse_label: &'a str,
    cell_label: &'a str,
    image_label: &'a str,
    layouts: &'a BTreeMap<String, Layout>,
    fill_values: &'a BTreeMap<String, FillValue>,
}

/// `PATH.partial`, beside `path`.
fn partial_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// An output that is one of the files it maps would be replaced by a file mapping itself.
fn refuse_source_as_output(det: &MultiModDetector, path: &Path) -> Result<()> {
    let Ok(out) = std::fs::canonicalize(path) else {
        return Ok(());
    };
    let is_source = det
        .data
        .files
        .iter()
        .any(|f| std::fs::canonicalize(&f.path).is_ok_and(|p| p == out));
    if is_source {
        return Err(Error::h5(
            path,
            "/",
            "is one of the run's files; the virtual CXI file must go elsewhere",
        ));
    }
    Ok(())
}

/// Creates `partial` with the whole file, closes it and reports errors of the close (errors
/// name `path`, the file the user asked for).
fn write_partial(partial: &Path, path: &Path, c: &Contents<'_>) -> Result<CxiSummary> {
    let f = hdf5::File::with_options()
        .with_fapl(|p| p.libver_v110())
        .create(partial)
        .map_err(|e| Error::h5(path, "/", e))?;
    let summary = write_objects(&f, path, c)?;
    // Every group and dataset handle is closed by now, so this close really writes the
    // file's metadata and says whether that worked.
    f.close()
        .map_err(|e| Error::h5(path, "closing the file", e))?;
    Ok(summary)
}

/// The objects of the file, in `f`; their handles are closed on return.
fn write_objects(f: &hdf5::File, path: &Path, c: &Contents<'_>) -> Result<CxiSummary> {
    let Contents {
        det,
        tids,
        pulse_ids,
        experiment_ids,
        pulse_label,
        cell_label,
        image_label,
        layouts,
        fill_values,
    } = *c;
    let nframes = tids.len();
    let nmodules = det.n_modules;
    let start_at = det.kind.modnos_start_at();
    let h5 = |obj: &str, e: hdf5::Error| Error::h5(path, obj, e);
    f.new_dataset::<i64>()
        .shape(1)
        .create("cxi_version")
        .and_then(|d| d.write_raw(&[150i64]))
        .map_err(|e| h5("cxi_version", e))?;
    let entry = f.create_group("entry_1").map_err(|e| h5("entry_1", e))?;
    entry
        .new_dataset::<VarLenUnicode>()
        .shape(nframes)
        .create("experiment_identifier")
        .and_then(|d| d.write_raw(experiment_ids))
        .map_err(|e| h5("entry_1/experiment_identifier", e))?;
    if let Some(f0) = det.data.files.first() {
        if let Some((proposal, run)) = f0.run_ident()? {
            h5util::attrs::set_str(
                &entry,
                "name",
                &format!("EuXFEL proposal {proposal} run {run}"),
            )
            .and_then(|_| {
                h5util::attrs::set_scalar(&entry, "euxfelProposalNumber", proposal as u32)
            })
            .and_then(|_| h5util::attrs::set_scalar(&entry, "euxfelRunNumber", run as u32))
            .map_err(|e| h5("entry_1 attributes", e))?;
        }
    }
    entry
        .new_dataset::<u64>()
        .shape(nframes)
        .create(pulse_label)
        .and_then(|d| d.write_raw(pulse_ids))
        .map_err(|e| h5(pulse_label, e))?;
    entry
        .new_dataset::<u64>()
        .shape(nframes)
        .create("trainId")
        .and_then(|d| d.write_raw(tids))
        .map_err(|e| h5("trainId", e))?;
    let mut summary = CxiSummary {
        frames: nframes,
        modules: nmodules,
        datasets: BTreeMap::new(),
    };
    let cell_layout = layouts
        .get(cell_label)
        .ok_or_else(|| Error::NoSources(cell_label.into()))?;
    let cellids = create_virtual(path, &entry, "cellId", cell_layout, None)?;
    h5util::attrs::set_str(&cellids, "axes", "experiment_identifier:module_identifier")
        .map_err(|e| h5("cellId", e))?;
    summary.datasets.insert(
        "entry_1/cellId".into(),
        (cell_layout.shape.clone(), cell_layout.maps.len()),
    );

    let dgrp = entry
        .create_group("instrument_1")
        .and_then(|g| g.create_group("detector_1"))
        .map_err(|e| h5("entry_1/instrument_1/detector_1", e))?;
    h5util::attrs::set_str(&dgrp, "name", &det.detector_name).map_err(|e| h5("detector_1", e))?;
    let data_layout = layouts
        .get(image_label)
        .ok_or_else(|| Error::NoSources(image_label.into()))?;
    let axes = if data_layout.shape.len() == 4 {
        "experiment_identifier:module_identifier:y:x"
    } else {
        let ndg = data_layout.shape[2];
        let labels: Vec<VarLenUnicode> = if ndg == 2 {
            vec![image_label, "gain"]
        } else {
            vec![image_label]
        }
        .into_iter()
        .filter_map(|s| s.parse().ok())
        .collect();
        entry
            .new_dataset::<VarLenUnicode>()
            .shape(labels.len())
            .create("data_gain")
            .and_then(|d| d.write_raw(&labels))
            .and_then(|_| dgrp.link_soft("/entry_1/data_gain", "data_gain"))
            .map_err(|e| h5("entry_1/data_gain", e))?;
        "experiment_identifier:module_identifier:data_gain:y:x"
    };
    for (label, out_name) in [(image_label, "data"), ("gain", "gain"), ("mask", "mask")] {
        let Some(layout) = layouts.get(label) else {
            continue;
        };
        let fill = match fill_values.get(label) {
            Some(v) => *v,
            None => match (label, &layout.dtype) {
                ("mask", _) => FillValue::Int(0xffff_ffff),
                ("gain", _) => FillValue::Int(0),
                (_, d) => FillValue::default_for(d),
            },
        };
        let ds = create_virtual(path, &dgrp, out_name, layout, Some(fill))?;
        h5util::attrs::set_str(&ds, "axes", axes).map_err(|e| h5(out_name, e))?;
        summary.datasets.insert(
            format!("entry_1/instrument_1/detector_1/{out_name}"),
            (layout.shape.clone(), layout.maps.len()),
        );
    }
    dgrp.link_soft("/entry_1/experiment_identifier", "experiment_identifier")
        .and_then(|_| entry.link_soft("/entry_1/instrument_1/detector_1", "data_1"))
        .map_err(|e| h5("soft links", e))?;
    let modnos: Vec<i64> = (0..nmodules).map(|i| (i + start_at) as i64).collect();
    dgrp.new_dataset::<i64>()
        .shape(nmodules)
        .create("module_identifier")
        .and_then(|d| d.write_raw(&modnos))
        .map_err(|e| h5("module_identifier", e))?;
    Ok(summary)
}

/// Creates one virtual dataset in the element type of `layout.dtype`.
fn create_virtual(
    path: &Path,
    g: &Group,
    name: &str,
    layout: &Layout,
    fill: Option<FillValue>,
) -> Result<hdf5::Dataset> {
    match layout.dtype {
        DType::UInt(1) | DType::Bool => create_virtual_t::<u8>(path, g, name, layout, fill),
        DType::UInt(2) => create_virtual_t::<u16>(path, g, name, layout, fill),
        DType::UInt(4) => create_virtual_t::<u32>(path, g, name, layout, fill),
        DType::UInt(8) => create_virtual_t::<u64>(path, g, name, layout, fill),
        DType::Int(1) => create_virtual_t::<i8>(path, g, name, layout, fill),
        DType::Int(2) => create_virtual_t::<i16>(path, g, name, layout, fill),
        DType::Int(4) => create_virtual_t::<i32>(path, g, name, layout, fill),
        DType::Int(8) => create_virtual_t::<i64>(path, g, name, layout, fill),
        DType::Float(4) => create_virtual_t::<f32>(path, g, name, layout, fill),
        DType::Float(8) => create_virtual_t::<f64>(path, g, name, layout, fill),
        ref d => Err(Error::UnsupportedDtype(d.numpy_name())),
    }
}

fn create_virtual_t<T: H5Type + bytemuck::Pod>(
    path: &Path,
    g: &Group,
    name: &str,
    layout: &Layout,
    fill: Option<FillValue>,
) -> Result<hdf5::Dataset> {
    let h5 = |e: &dyn std::fmt::Display| Error::h5(path, name, e);
    let dcpl = hdf5::plist::DatasetCreate::try_new().map_err(|e| h5(&e))?;
    let vds_shape: Vec<u64> = layout.shape.iter().map(|&d| d as u64).collect();
    for m in &layout.maps {
        let mapping = h5util::VirtualMapping {
            src_file: &m.file,
            src_dataset: &m.dataset,
            src_shape: &m.src_shape,
            src_block: &m.src_block,
            vds_block: &m.vds_block,
        };
        h5util::add_virtual_mapping(&dcpl, &vds_shape, &mapping).map_err(|e| h5(&e))?;
    }
    let mut b = g
        .new_dataset::<T>()
        .shape(layout.shape.clone())
        .set_dcpl(&dcpl);
    if let Some(f) = fill {
        let bytes = f.to_bytes(&layout.dtype)?;
        let v: T = bytemuck::pod_read_unaligned(&bytes);
        b = b.fill_value(v);
    }
    b.create(name).map_err(|e| h5(&e))
}

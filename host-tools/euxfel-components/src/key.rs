//! One key over all modules of a detector (EXtra-data's `MultimodKeyData` and
//! `XtdfImageMultimodKeyData`): shape `(modules, frames or trains, ...)`, pulse selection,
//! reads module by module straight into the output buffer, coordinates and availability.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use euxfel::{DType, DataSpan, Element, KeyData};

use crate::astype::{converter, Converter};
use crate::error::{Error, Result};
use crate::fill::{fill_bytes, FillValue};
use crate::multimod::MultiModDetector;
use crate::output::zeroed_vec;
use crate::roi::{Roi, RoiPlan};

/// Placeholder for a pulse/cell ID a module did not record (EXtra-data's `NO_PULSE_ID`).
pub const NO_PULSE_ID: u64 = 9999;
/// EXtra-data's `MAX_PULSES`: the end of an open pulse slice.
pub const MAX_PULSES: u64 = 2700;

/// Pulses within each train: positions (`by_index`) or pulse IDs (`by_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulses {
    /// `start:stop:step` (step >= 1).
    Slice {
        start: u64,
        stop: u64,
        step: u64,
    },
    List(Vec<u64>),
}

/// A pulse selection (EXtra-data's `select_pulses` argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PulseSelection {
    All,
    ByIndex(Pulses),
    ById(Pulses),
}

/// A stacked array: raw little-endian bytes in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct StackedArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// `(source row, target row, rows)`: rows of one data span that land contiguously in the
/// stacked output.
type Mapping = (u64, usize, usize);

/// A module number with each of its data spans and their mappings.
pub(crate) type ModuleMappings = (usize, Vec<(DataSpan, Vec<Mapping>)>);

/// One key over all modules.
#[derive(Debug, Clone)]
pub struct MultiModKey {
    det: MultiModDetector,
    pub key: String,
    /// (module number, its key data), in module order.
    modules: Vec<(usize, KeyData)>,
    /// XTDF `image.*` keys have one row per frame; other keys one per train.
    per_frame: bool,
    /// Raw XTDF data has an axis of length 1 after the frame axis, dropped in the output.
    extraneous_dim: bool,
    pulses: PulseSelection,
    /// Selected frames (per-frame keys with a pulse selection).
    sel_frames: Option<Vec<bool>>,
    /// Region of interest of each entry (empty: all of it).
    roi: Roi,
}

impl MultiModKey {
    pub(crate) fn new(det: MultiModDetector, key: &str) -> Result<MultiModKey> {
        let mut modules = Vec::with_capacity(det.source_to_modno.len());
        for (m, s) in det.modno_to_source() {
            modules.push((m, det.data.key(&s, key)?));
        }
        let per_frame = det.kind.is_xtdf() && key.starts_with("image.");
        let extraneous_dim = per_frame
            && modules
                .first()
                .is_some_and(|(_, kd)| kd.entry_shape.first() == Some(&1));
        Ok(MultiModKey {
            det,
            key: key.to_string(),
            modules,
            per_frame,
            extraneous_dim,
            pulses: PulseSelection::All,
            sel_frames: None,
            roi: Roi::default(),
        })
    }

    /// Every module is read with the first module's dtype and entry shape: one whose files
    /// differ would be reinterpreted, not converted. (EXtra-data converts a dtype on reading
    /// and fails on a shape: `Can't broadcast`.) Virtual datasets check only the shape:
    /// libhdf5 converts the dtype of a source, as in EXtra-data's file.
    fn check_modules_alike(&self, dtype_too: bool) -> Result<()> {
        let eg = self.eg()?;
        for (_, kd) in &self.modules {
            if (dtype_too && kd.dtype != eg.dtype) || kd.entry_shape != eg.entry_shape {
                return Err(Error::ModulesDiffer {
                    module: format!(
                        "{} {}: dtype {}, entry shape {:?}",
                        kd.source,
                        self.key,
                        kd.dtype.numpy_name(),
                        kd.entry_shape
                    ),
                    first: format!(
                        "{} has {}, {:?}",
                        eg.source,
                        eg.dtype.numpy_name(),
                        eg.entry_shape
                    ),
                });
            }
        }
        Ok(())
    }

    fn eg(&self) -> Result<&KeyData> {
        self.modules
            .first()
            .map(|(_, kd)| kd)
            .ok_or_else(|| Error::NoSources(self.det.detector_name.clone()))
    }

    /// Module numbers with data sources, in order.
    pub fn modules(&self) -> Vec<usize> {
        self.modules.iter().map(|(m, _)| *m).collect()
    }

    pub fn dtype(&self) -> Result<DType> {
        Ok(self.eg()?.dtype.clone())
    }

    /// Shape of one frame (or train) of one module in the output.
    pub fn entry_shape(&self) -> Result<Vec<usize>> {
        let s = &self.eg()?.entry_shape;
        Ok(if self.extraneous_dim {
            s[1..].to_vec()
        } else {
            s.clone()
        })
    }

    /// EXtra-data's dimension names.
    pub fn dimensions(&self) -> Result<Vec<String>> {
        let inner = self.entry_shape()?.len();
        let mut d = vec!["module".to_string()];
        if self.per_frame {
            d.push("train_pulse".into());
            match inner {
                3 => d.extend(["data_gain", "slow_scan", "fast_scan"].map(String::from)),
                2 => d.extend(["slow_scan", "fast_scan"].map(String::from)),
                n => d.extend((0..n).map(|i| format!("dim_{i}"))),
            }
        } else {
            d.push("trainId".into());
            d.extend((0..inner).map(|i| format!("dim_{i}")));
        }
        Ok(d)
    }

    /// Train ID of each output row, before the pulse selection.
    fn target_train_ids(&self) -> Vec<u64> {
        if self.per_frame {
            self.det.train_ids_perframe()
        } else {
            self.det.train_ids().to_vec()
        }
    }

    fn n_selected(&self) -> usize {
        match &self.sel_frames {
            Some(s) => s.iter().filter(|&&b| b).count(),
            None => {
                if self.per_frame {
                    self.det.frame_counts().iter().sum::<u64>() as usize
                } else {
                    self.det.train_ids().len()
                }
            }
        }
    }

    /// `(modules, rows) + entry_shape`, the entry shape cut to the region of interest; with
    /// `module_gaps`, room for every module of the detector.
    pub fn buffer_shape(&self, module_gaps: bool) -> Result<Vec<usize>> {
        let m = if module_gaps {
            self.det.n_modules
        } else {
            self.modules.len()
        };
        let mut s = vec![m, self.n_selected()];
        match self.roi_plan()? {
            Some(p) => s.extend(p.shape),
            None => s.extend(self.entry_shape()?),
        }
        Ok(s)
    }

    /// The same key read through a region of interest of each entry (EXtra-data's
    /// `ndarray(roi=...)`): [`MultiModKey::buffer_shape`] and every read give only that
    /// part of each frame (after the extra axis of raw XTDF data, as EXtra-data applies it).
    pub fn select_roi(&self, roi: Roi) -> Result<MultiModKey> {
        let k = MultiModKey {
            roi,
            ..self.clone()
        };
        k.roi_plan()?;
        Ok(k)
    }

    /// Where the region of interest lies in each entry; `None` without one.
    fn roi_plan(&self) -> Result<Option<RoiPlan>> {
        if self.roi.0.is_empty() {
            return Ok(None);
        }
        let item = self.eg()?.dtype.item_size().unwrap_or(1).max(1);
        RoiPlan::new(&self.roi, &self.entry_shape()?, item).map(Some)
    }

    pub fn shape(&self) -> Result<Vec<usize>> {
        self.buffer_shape(false)
    }

    /// The same key with a pulse selection (XTDF `image.*` keys).
    pub fn select_pulses(&self, pulses: PulseSelection) -> Result<MultiModKey> {
        if !self.per_frame {
            return Err(Error::PulseSelection(
                "pulse selection applies to per-pulse (image.*) data of AGIPD, DSSC and LPD",
            ));
        }
        if let PulseSelection::ByIndex(Pulses::Slice { step: 0, .. })
        | PulseSelection::ById(Pulses::Slice { step: 0, .. }) = &pulses
        {
            return Err(Error::PulseSelection(
                "Pulse selection slice must have positive step",
            ));
        }
        let sel = match &pulses {
            PulseSelection::All => None,
            PulseSelection::ByIndex(Pulses::Slice {
                start: 0,
                stop: MAX_PULSES,
                step: 1,
            }) => None,
            PulseSelection::ByIndex(p) => Some(select_by_index(
                p,
                self.det.frame_counts(),
                self.det.parallel_gain(),
            )),
            PulseSelection::ById(p) => {
                let ids = self.inner_ids("pulseId")?;
                let keep = |id: u64| match p {
                    Pulses::Slice { start, stop, step } => {
                        id >= *start && id < *stop && (id - start) % step == 0
                    }
                    Pulses::List(v) => v.contains(&id),
                };
                Some(ids.into_iter().map(keep).collect())
            }
        };
        Ok(MultiModKey {
            pulses,
            sel_frames: sel,
            ..self.clone()
        })
    }

    /// The current pulse selection.
    pub fn pulses(&self) -> &PulseSelection {
        &self.pulses
    }

    /// The same key over a subset of trains.
    pub fn select_trains(&self, sel: &euxfel::TrainSelection) -> Result<MultiModKey> {
        self.over(self.det.select_trains(sel)?)
    }

    /// This key, its pulse selection and region of interest over the trains of `det`.
    fn over(&self, det: MultiModDetector) -> Result<MultiModKey> {
        let k = MultiModKey {
            roi: self.roi.clone(),
            ..MultiModKey::new(det, &self.key)?
        };
        if self.pulses == PulseSelection::All {
            Ok(k)
        } else {
            k.select_pulses(self.pulses.clone())
        }
    }

    /// One stacked array per train, `(modules, frames of the train, ...)` for `image.*` keys
    /// and `(modules, 1, ...)` for per-train keys, in train order (the arrays of EXtra-data's
    /// `det.trains()` for this key). With `require_all`, trains where a module lacks data
    /// are skipped, as EXtra-data's default; without, its rows hold `fill`. One train is
    /// read at a time.
    pub fn trains(
        &self,
        fill: Option<FillValue>,
        require_all: bool,
    ) -> Result<impl Iterator<Item = Result<(u64, StackedArray)>> + '_> {
        let parts = self.det.split_trains(None, Some(1), None)?;
        Ok(parts.into_iter().filter_map(move |det| {
            let train_id = *det.train_ids().first()?;
            let read = || -> Result<Option<StackedArray>> {
                let k = self.over(det)?;
                if require_all && !k.data_availability(false)?.1.iter().all(|&a| a) {
                    return Ok(None);
                }
                k.ndarray_bytes(fill, false).map(Some)
            };
            read().transpose().map(|r| r.map(|a| (train_id, a)))
        }))
    }

    /// Train ID of each output row.
    pub fn train_id_coordinates(&self) -> Vec<u64> {
        self.apply_sel(self.target_train_ids())
    }

    /// Pulse ID of each output frame (the same in every module that has it).
    pub fn pulse_id_coordinates(&self) -> Result<Vec<u64>> {
        Ok(self.apply_sel(self.inner_ids("pulseId")?))
    }

    /// Memory cell ID of each output frame.
    pub fn cell_id_coordinates(&self) -> Result<Vec<u64>> {
        Ok(self.apply_sel(self.inner_ids("cellId")?))
    }

    fn apply_sel<T: Copy>(&self, v: Vec<T>) -> Vec<T> {
        match &self.sel_frames {
            Some(s) => v
                .into_iter()
                .zip(s)
                .filter(|(_, &k)| k)
                .map(|(x, _)| x)
                .collect(),
            None => v,
        }
    }

    /// Where each module has data: shape `(modules, rows)`, row-major.
    pub fn data_availability(&self, module_gaps: bool) -> Result<(Vec<usize>, Vec<bool>)> {
        let target = TargetIndex::new(&self.target_train_ids());
        let n_rows = target.len;
        let shape = self.buffer_shape(module_gaps)?;
        let mut out = vec![false; shape[0] * shape[1]];
        for (i, (m, kd)) in self.modules.iter().enumerate() {
            let ix = self.module_slot(i, *m, module_gaps)?;
            let mut row = vec![false; n_rows];
            for span in kd.data_spans() {
                for (_, t, n) in align(&span, &target, kd)? {
                    row[t..t + n].fill(true);
                }
            }
            let row = self.apply_sel(row);
            out[ix * shape[1]..(ix + 1) * shape[1]].copy_from_slice(&row);
        }
        Ok((shape[..2].to_vec(), out))
    }

    /// Index of a module in the output: its position, or with `module_gaps` its number
    /// (which must fit the detector's module count).
    fn module_slot(&self, i: usize, modno: usize, module_gaps: bool) -> Result<usize> {
        if !module_gaps {
            return Ok(i);
        }
        modno
            .checked_sub(self.det.kind.modnos_start_at())
            .filter(|&ix| ix < self.det.n_modules)
            .ok_or(Error::ModuleOutOfRange {
                module: modno as i64,
                modules: self.det.n_modules,
            })
    }

    /// Reads into `out`, shaped as [`MultiModKey::buffer_shape`]; rows a module lacks are
    /// left untouched (the caller has filled them). Modules are read in parallel, each
    /// with one read per contiguous run of selected rows, straight into `out`.
    pub fn read_into_bytes(&self, out: &mut [u8], module_gaps: bool) -> Result<()> {
        self.read_into(out, module_gaps, None, None)
    }

    /// [`MultiModKey::read_into_bytes`] that also writes `fill` (one output element) into the
    /// rows and module slots without data, so `out` needs no filling beforehand, and with
    /// `convert` (the conversion and the output element size) converts the values.
    fn read_into(
        &self,
        out: &mut [u8],
        module_gaps: bool,
        fill: Option<&[u8]>,
        convert: Option<(Converter, usize)>,
    ) -> Result<()> {
        self.check_modules_alike(true)?;
        let shape = self.buffer_shape(module_gaps)?;
        let eb = self.eg()?.entry_bytes()?;
        let roi = self.roi_plan()?;
        // Bytes of the selected part of an entry, before any conversion.
        let sel_eb = roi.as_ref().map_or(eb, |p| p.entry_bytes);
        let out_eb = match convert {
            Some((_, item)) => {
                let src_item = self.eg()?.dtype.item_size().unwrap_or(1).max(1);
                (sel_eb / src_item)
                    .checked_mul(item)
                    .ok_or_else(|| Error::TooLarge {
                        object: self.key.clone(),
                        what: "output",
                    })?
            }
            None => sel_eb,
        };
        let needed = shape[0]
            .checked_mul(shape[1])
            .and_then(|n| n.checked_mul(out_eb))
            .ok_or_else(|| Error::TooLarge {
                object: self.key.clone(),
                what: "output",
            })?;
        if out.len() != needed {
            return Err(Error::BufferSize {
                needed,
                got: out.len(),
            });
        }
        let module_bytes = shape[1] * out_eb;
        if module_bytes == 0 {
            return Ok(());
        }
        let target = TargetIndex::new(&self.target_train_ids());
        let sel_pos = self.sel_frames.as_ref().map(|s| prefix_positions(s));
        let mut slots: Vec<Option<&mut [u8]>> = out.chunks_mut(module_bytes).map(Some).collect();
        let mut jobs: Vec<Mutex<Option<ModuleJob>>> = Vec::with_capacity(self.modules.len());
        for (i, (m, kd)) in self.modules.iter().enumerate() {
            let ix = self.module_slot(i, *m, module_gaps)?;
            if let Some(buf) = slots.get_mut(ix).and_then(Option::take) {
                jobs.push(Mutex::new(Some((kd, buf))));
            }
        }
        // Slots of modules without a source (module gaps) hold only the fill value.
        if let Some(elem) = fill {
            for buf in slots.into_iter().flatten() {
                fill_bytes(buf, elem);
            }
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(jobs.len())
            .max(1);
        // Each thread takes the next module when it is done with one: a thread that the
        // scheduler holds back (a loaded machine) does not leave a fixed share of the modules
        // waiting behind it.
        let next = AtomicUsize::new(0);
        let rows = Rows {
            target: &target,
            sel: self.sel_frames.as_deref(),
            sel_pos: sel_pos.as_deref(),
            eb,
            out_eb,
            fill,
            convert: convert.map(|(c, _)| c),
            roi: roi.as_ref(),
        };
        let work = || -> Result<()> {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else {
                    return Ok(());
                };
                let taken = job.lock().ok().and_then(|mut j| j.take());
                if let Some((kd, buf)) = taken {
                    read_module(kd, buf, &rows)?;
                }
            }
        };
        std::thread::scope(|s| {
            // A thread that cannot start (a process limit) leaves its modules to the others.
            let handles: Vec<_> = (1..threads)
                .map_while(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
                .collect();
            let here = work();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(Error::ReaderPanicked)))
                .chain(std::iter::once(here))
                .collect::<Result<Vec<()>>>()
        })?;
        Ok(())
    }

    /// The output buffer for `shape`, zeroed (fresh pages from the kernel come zeroed: no
    /// pass over the memory before the read).
    fn zeroed_output<T: bytemuck::Pod>(&self, shape: &[usize]) -> Result<Vec<T>> {
        let too_large = || Error::TooLarge {
            object: self.key.clone(),
            what: "output",
        };
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(too_large)?;
        zeroed_vec(n).ok_or_else(too_large)
    }

    /// The fill element of the output dtype, or `None` when it is all zero bytes (a zeroed
    /// buffer holds it).
    fn fill_element(&self, fill: Option<FillValue>, dtype: &DType) -> Result<Option<Vec<u8>>> {
        let elem = fill
            .unwrap_or_else(|| FillValue::default_for(dtype))
            .to_bytes(dtype)?;
        Ok(elem.iter().any(|&b| b != 0).then_some(elem))
    }

    /// Reads into a new array; missing modules and frames hold `fill` (NaN for floats, 0
    /// for integers by default). Every byte of the output is written once: by the read or,
    /// where no module has data, by the fill.
    pub fn ndarray_bytes(
        &self,
        fill: Option<FillValue>,
        module_gaps: bool,
    ) -> Result<StackedArray> {
        self.ndarray_bytes_as(&self.dtype()?, fill, module_gaps)
    }

    /// [`MultiModKey::ndarray_bytes`] with the values converted to `astype` (EXtra-data's
    /// `ndarray(astype=...)`): the data's own dtype, or float32 / float64 from integer or
    /// float data. The fill value (by default NaN) is one of `astype`.
    pub fn ndarray_bytes_as(
        &self,
        astype: &DType,
        fill: Option<FillValue>,
        module_gaps: bool,
    ) -> Result<StackedArray> {
        let from = self.dtype()?;
        let item = astype
            .item_size()
            .ok_or_else(|| Error::UnsupportedDtype(astype.numpy_name()))?;
        let convert = if *astype == from {
            None
        } else {
            let c = converter(&from, astype).ok_or_else(|| Error::Astype {
                from: from.numpy_name(),
                to: astype.numpy_name(),
            })?;
            Some((c, item))
        };
        let elem = self.fill_element(fill, astype)?;
        let mut shape = self.buffer_shape(module_gaps)?;
        shape.push(item);
        let mut data = self.zeroed_output::<u8>(&shape)?;
        shape.pop();
        self.read_into(&mut data, module_gaps, elem.as_deref(), convert)?;
        Ok(StackedArray {
            dtype: astype.clone(),
            shape,
            data,
        })
    }

    /// Reads into a new typed array; `T` must match the dtype.
    pub fn ndarray<T: Element>(
        &self,
        fill: Option<FillValue>,
        module_gaps: bool,
    ) -> Result<ndarray::ArrayD<T>> {
        let dtype = self.dtype()?;
        if !T::matches(&dtype) {
            return Err(Error::UnsupportedDtype(format!(
                "{} (requested {})",
                dtype.numpy_name(),
                std::any::type_name::<T>()
            )));
        }
        let elem = self.fill_element(fill, &dtype)?;
        let shape = self.buffer_shape(module_gaps)?;
        let mut v = self.zeroed_output::<T>(&shape)?;
        self.read_into(
            bytemuck::cast_slice_mut(&mut v),
            module_gaps,
            elem.as_deref(),
            None,
        )?;
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), v).map_err(|_| Error::TooLarge {
            object: self.key.clone(),
            what: "output",
        })
    }

    /// `image.<field>` per frame (all frames), checked to agree across modules (EXtra-data's
    /// `_collect_inner_ids`).
    pub(crate) fn inner_ids(&self, field: &str) -> Result<Vec<u64>> {
        MultiModKey::new(self.det.clone(), &format!("image.{field}"))?.inner_ids_flat()
    }

    /// This key's values (all rows, every value of a row in order), checked to agree across
    /// modules: a module without data for a row does not count.
    pub(crate) fn inner_ids_flat(&self) -> Result<Vec<u64>> {
        let field = self.key.rsplit('.').next().unwrap_or(&self.key);
        let mut per_module = self.module_u64_rows()?;
        let frames: u64 = self.det.frame_counts().iter().sum();
        if self.det.parallel_gain() && self.per_frame {
            // Only the first gain stage's IDs are valid: they stand for all three.
            for m in per_module.iter_mut().filter(|m| m.len() as u64 == frames) {
                repeat_first_stage(m, self.det.frame_counts());
            }
        }
        let n = per_module.first().map_or(0, Vec::len);
        let mut out = vec![0u64; n];
        for (i, o) in out.iter_mut().enumerate() {
            let min = per_module.iter().map(|m| m[i]).min().unwrap_or(NO_PULSE_ID);
            if min == NO_PULSE_ID {
                return Err(Error::MissingInnerIds(field.into()));
            }
            let max = per_module
                .iter()
                .map(|m| if m[i] == NO_PULSE_ID { 0 } else { m[i] })
                .max()
                .unwrap_or(0);
            if min != max {
                return Err(Error::InconsistentInnerIds(field.into()));
            }
            *o = min;
        }
        Ok(out)
    }

    /// Each module's integer rows as u64, flattened (`NO_PULSE_ID` where missing).
    fn module_u64_rows(&self) -> Result<Vec<Vec<u64>>> {
        self.check_modules_alike(true)?;
        let dtype = self.dtype()?;
        let isz = match dtype {
            DType::UInt(n) | DType::Int(n) => n,
            d => return Err(Error::UnsupportedDtype(d.numpy_name())),
        };
        let per_row: usize = self.eg()?.entry_shape.iter().product();
        let eb = isz * per_row;
        let target = TargetIndex::new(&self.target_train_ids());
        let signed = matches!(dtype, DType::Int(_));
        let mut out = Vec::with_capacity(self.modules.len());
        for (_, kd) in &self.modules {
            let mut buf = vec![0u8; target.len * eb];
            let mut have = vec![false; target.len];
            for span in kd.data_spans() {
                check_span_shape(&span, kd)?;
                for (src, t, n) in align(&span, &target, kd)? {
                    span.read_rows(src, n as u64, eb, &mut buf[t * eb..(t + n) * eb])?;
                    have[t..t + n].fill(true);
                }
            }
            let vals = buf
                .chunks_exact(isz)
                .enumerate()
                .map(|(i, b)| {
                    if !have[i / per_row.max(1)] {
                        return NO_PULSE_ID;
                    }
                    let mut le = [0u8; 8];
                    le[..isz].copy_from_slice(b);
                    if signed && b[isz - 1] & 0x80 != 0 {
                        le[isz..].fill(0xff);
                    }
                    u64::from_le_bytes(le)
                })
                .collect();
            out.push(vals);
        }
        Ok(out)
    }

    /// Each module's data spans with their mappings into the output rows (before any pulse
    /// selection): for virtual datasets.
    pub(crate) fn module_mappings(&self) -> Result<Vec<ModuleMappings>> {
        self.check_modules_alike(false)?;
        let target = TargetIndex::new(&self.target_train_ids());
        let mut out = Vec::with_capacity(self.modules.len());
        for (m, kd) in &self.modules {
            let mut spans = Vec::new();
            for span in kd.data_spans() {
                check_span_shape(&span, kd)?;
                let maps = align(&span, &target, kd)?;
                spans.push((span, maps));
            }
            out.push((*m, spans));
        }
        Ok(out)
    }
}

/// Per-train position of the output rows.
struct TargetIndex {
    /// train ID -> (first row, rows)
    rows: HashMap<u64, (usize, usize)>,
    len: usize,
}

impl TargetIndex {
    fn new(tids: &[u64]) -> TargetIndex {
        let mut rows: HashMap<u64, (usize, usize)> = HashMap::new();
        for (i, &t) in tids.iter().enumerate() {
            rows.entry(t).and_modify(|e| e.1 += 1).or_insert((i, 1));
        }
        TargetIndex {
            rows,
            len: tids.len(),
        }
    }
}

/// Where the rows of a span go in the output: one mapping per run of trains that is
/// contiguous in both (EXtra-data's `_split_align_chunk`).
fn align(span: &DataSpan, target: &TargetIndex, kd: &KeyData) -> Result<Vec<Mapping>> {
    let mut out: Vec<Mapping> = Vec::new();
    let mut src = span.first;
    for (&tid, &count) in span.train_ids.iter().zip(&span.counts) {
        if count == 0 {
            continue;
        }
        let Some(&(t0, n)) = target.rows.get(&tid) else {
            src += count;
            continue;
        };
        if count != n as u64 {
            return Err(Error::EntriesPerTrain {
                source_name: kd.source.clone(),
                key: kd.key.clone(),
                train_id: tid,
                train_id_count: count,
            });
        }
        match out.last_mut() {
            Some((s, t, len)) if *s + *len as u64 == src && *t + *len == t0 => *len += n,
            _ => out.push((src, t0, n)),
        }
        src += count;
    }
    Ok(out)
}

/// For each row, how many selected rows come before it.
fn prefix_positions(sel: &[bool]) -> Vec<usize> {
    let mut acc = 0;
    sel.iter()
        .map(|&b| {
            let p = acc;
            acc += usize::from(b);
            p
        })
        .collect()
}

/// EXtra-data's `_select_pulse_indices`: positions within each train.
fn select_by_index(p: &Pulses, frame_counts: &[u64], parallel_gain: bool) -> Vec<bool> {
    let total: u64 = frame_counts.iter().sum();
    let mut sel = vec![false; total as usize];
    let mut cursor = 0usize;
    // With parallel gain, the selection applies to each third of a train (one gain stage).
    let stages = if parallel_gain { 3 } else { 1 };
    for &c in frame_counts
        .iter()
        .flat_map(|c| std::iter::repeat_n(c, stages))
    {
        let c = (c / stages as u64) as usize;
        let train = &mut sel[cursor..cursor + c];
        match p {
            Pulses::Slice { start, stop, step } => {
                let end = (*stop as usize).min(c);
                let mut i = *start as usize;
                while i < end {
                    train[i] = true;
                    i += *step as usize;
                }
            }
            Pulses::List(v) => {
                for &i in v {
                    if let Some(x) = train.get_mut(i as usize) {
                        *x = true;
                    }
                }
            }
        }
        cursor += c;
    }
    sel
}

/// Copies the first third of each train's `values` (one per frame) over the other two.
fn repeat_first_stage(values: &mut [u64], frame_counts: &[u64]) {
    let mut cursor = 0usize;
    for &c in frame_counts {
        let n = (c / 3) as usize;
        let end = (cursor + c as usize).min(values.len());
        for i in cursor + n..end {
            values[i] = values[cursor + (i - cursor) % n.max(1)];
        }
        cursor = end;
    }
}

/// A module's key data and its slot of the output, taken by one reader thread.
type ModuleJob<'a> = (&'a KeyData, &'a mut [u8]);

/// How the rows of one module land in its slot of the output.
struct Rows<'a> {
    target: &'a TargetIndex,
    /// Selected rows (pulse selection) and, for each row, its position among them.
    sel: Option<&'a [bool]>,
    sel_pos: Option<&'a [usize]>,
    /// Bytes per row in the file and in the output (they differ when converting).
    eb: usize,
    out_eb: usize,
    /// Written into the rows the module has no data for.
    fill: Option<&'a [u8]>,
    /// Converts rows read from the file into output rows.
    convert: Option<Converter>,
    /// The part of each row that goes into the output.
    roi: Option<&'a RoiPlan>,
}

/// Rows read at a time for a converting or ROI read (the file's bytes go through a buffer of
/// this size at most, then into the output converted or cut).
const CONVERT_BATCH_BYTES: usize = 1 << 20;

/// Bytes an unconverted read copies between two looks at the Ctrl-C flag: large enough that
/// a read stays one copy per file chunk of any usual size, small enough that Ctrl-C ends a
/// stacked read of many GB within a fraction of a second.
const INTERRUPT_STEP_BYTES: usize = 256 << 20;

/// `Err(Interrupted)` once SIGINT arrived in a command that catches it
/// ([`euxfel::catch_interrupt`]): every reader thread stops at its next step.
fn check_interrupt() -> Result<()> {
    if euxfel::interrupted() {
        Err(euxfel::Error::Interrupted.into())
    } else {
        Ok(())
    }
}

/// A sequence file whose dataset has other entries than the key's (from its first file)
/// would be read as rows of the wrong size.
fn check_span_shape(span: &DataSpan, kd: &KeyData) -> Result<()> {
    let shape = span.dataset_shape()?;
    if shape.get(1..) != Some(&kd.entry_shape[..]) {
        return Err(Error::SpanShape {
            path: span.file.path.clone(),
            dataset: span.dataset.clone(),
            shape,
            entry: kd.entry_shape.clone(),
        });
    }
    Ok(())
}

/// Reads one module's rows into `buf` (its slot of the output); with `rows.fill`, fills the
/// output rows it has no data for.
fn read_module(kd: &KeyData, buf: &mut [u8], rows: &Rows<'_>) -> Result<()> {
    let (eb, out_eb) = (rows.eb, rows.out_eb);
    // Output rows written, as (first, count), in increasing order.
    let mut written: Vec<(usize, usize)> = Vec::new();
    let (mut staging, mut picked): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    // `count` rows from file row `src` into output rows from `o`.
    let mut put = |span: &DataSpan, src: u64, o: usize, count: usize| -> Result<()> {
        let out = &mut buf[o * out_eb..(o + count) * out_eb];
        if rows.convert.is_none() && rows.roi.is_none() {
            let batch = (INTERRUPT_STEP_BYTES / eb.max(1)).max(1);
            for (i, piece) in out.chunks_mut(batch * eb).enumerate() {
                check_interrupt()?;
                let n = (piece.len() / eb) as u64;
                span.read_rows(src + (i * batch) as u64, n, eb, piece)?;
            }
            return Ok(());
        }
        let batch = (CONVERT_BATCH_BYTES / eb.max(1)).max(1);
        for (i, piece) in out.chunks_mut(batch * out_eb).enumerate() {
            check_interrupt()?;
            let n = piece.len() / out_eb;
            staging.resize(n * eb, 0);
            span.read_rows(src + (i * batch) as u64, n as u64, eb, &mut staging)?;
            match (rows.roi, rows.convert) {
                (Some(roi), Some(convert)) => {
                    picked.resize(n * roi.entry_bytes, 0);
                    roi.gather(&staging, eb, &mut picked);
                    convert(&picked, piece);
                }
                (Some(roi), None) => roi.gather(&staging, eb, piece),
                (None, Some(convert)) => convert(&staging, piece),
                (None, None) => piece.copy_from_slice(&staging),
            }
        }
        Ok(())
    };
    for span in kd.data_spans() {
        check_span_shape(&span, kd)?;
        for (src, t, n) in align(&span, rows.target, kd)? {
            match (rows.sel, rows.sel_pos) {
                (Some(sel), Some(pos)) => {
                    let mut a = t;
                    while a < t + n {
                        if !sel[a] {
                            a += 1;
                            continue;
                        }
                        let mut b = a;
                        while b < t + n && sel[b] {
                            b += 1;
                        }
                        put(&span, src + (a - t) as u64, pos[a], b - a)?;
                        written.push((pos[a], b - a));
                        a = b;
                    }
                }
                _ => {
                    put(&span, src, t, n)?;
                    written.push((t, n));
                }
            }
        }
    }
    if let Some(elem) = rows.fill {
        written.sort_unstable();
        let mut at = 0;
        for (o, n) in written
            .into_iter()
            .chain(std::iter::once((buf.len() / out_eb, 0)))
        {
            if o > at {
                fill_bytes(&mut buf[at * out_eb..o * out_eb], elem);
            }
            at = at.max(o + n);
        }
    }
    Ok(())
}

//! The file sink of a series: a writer thread that owns the series' [`AcqFileWriter`], and the
//! batch buffers that cycle between it and the receiving thread.
//!
//! The receiving thread copies each image straight from its ZMQ message into a contiguous batch
//! of `chunk_frames` frames; the writer thread writes full batches, cut to end on chunk
//! boundaries, so each is one HDF5 direct chunk write. The [`BATCHES`] buffers are allocated
//! once when the series opens; when all of them wait to be written, receiving waits too and
//! PULL's back-pressure reaches the sender.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use acq_core::geometry::{FrameMeta, Geometry};
use h5util::attrs::{set_scalar, set_str};
use xspress3::layout;
use xspress3::protocol::RoiValues;
use xspress3::{AcqDescription, AcqFileWriter, OutputConfig, WriteError};

use crate::config::WriteConfig;
use crate::report::SeriesSummary;

/// Batch buffers per series: one being filled, the others queued for or in the writer thread.
const BATCHES: usize = 4;

/// Why the file sink of a series failed. The writer's own write errors are not among them:
/// they reach the receiver through [`FileSink::take_failure`], since the writer thread keeps
/// running (and discarding) after one.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The first file could not be created.
    #[error(transparent)]
    Create(WriteError),
    #[error("cannot start the writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The writer thread stopped taking or returning batches (it can only have panicked).
    #[error("the writer thread ended unexpectedly")]
    WriterEnded,
    #[error("the writer thread panicked; the file may lack its final attributes")]
    WriterPanicked,
}

/// Frames copied from messages, waiting to be written as one batch.
struct Batch {
    mca: Vec<u32>,
    scalers: Vec<u32>,
    /// ROI sums `[frame][roi][chan]`.
    rois: Vec<u64>,
    meta: Vec<FrameMeta>,
    len: usize,
}

/// Work for a series' writer thread.
enum Job {
    Write(Batch),
    Flush,
}

/// What a writer thread hands back when its series ends.
pub(crate) struct WriterEnd {
    pub(crate) writer: AcqFileWriter,
    /// Frames of batches not written after a write error.
    pub(crate) discarded: u64,
}

/// A series' files, written on their own thread so that receiving and copying overlap with HDF5
/// writes. See the module documentation.
pub(crate) struct FileSink {
    geometry: Geometry,
    jobs: mpsc::SyncSender<Job>,
    free: mpsc::Receiver<Batch>,
    /// The batch being filled.
    filling: Option<Batch>,
    thread: JoinHandle<WriterEnd>,
    /// The writer thread's first error, until the receiver takes it.
    failure: Arc<Mutex<Option<WriteError>>>,
    chunk: usize,
    /// Whether file boundaries fall on chunk boundaries (no rollover, or a multiple of a chunk),
    /// so that batches can be cut to end on one.
    aligned: bool,
    submitted: u64,
    /// Times the receiving thread waited for the writer (every batch buffer was full).
    pub(crate) writer_waits: u64,
    /// Frames that make the batch being filled end on a chunk boundary.
    target: usize,
    last_submit: Instant,
    /// Frames the writer thread has written and flushed (safe from a crash), in push order.
    flushed: Arc<AtomicU64>,
    /// Message numbers of the frames pushed and not yet reported flushed, as `[first, count]`
    /// runs in push order (for acknowledgements).
    unflushed_msgs: VecDeque<[u64; 2]>,
    /// Frames pushed in total, and those reported flushed by [`FileSink::take_flushed_msgs`].
    pushed: u64,
    reported_flushed: u64,
}

impl FileSink {
    /// Creates the first file (so an existing file or a bad directory fails here, before any
    /// frame) and starts the writer thread.
    pub(crate) fn open(
        w: &WriteConfig,
        name: &str,
        desc: AcqDescription,
    ) -> Result<FileSink, SinkError> {
        let geometry = desc.geometry;
        let writer = AcqFileWriter::create(
            OutputConfig {
                dir: w.root.clone(),
                name: name.to_string(),
                frames_per_file: w.frames_per_file,
                overwrite: w.overwrite,
                swmr: w.swmr,
                flush_interval: w.flush_interval,
            },
            desc,
        )
        .map_err(SinkError::Create)?;
        let chunk = writer.chunk_frames();
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(BATCHES + 1);
        let (free_tx, free_rx) = mpsc::sync_channel::<Batch>(BATCHES);
        for _ in 0..BATCHES {
            let batch = Batch {
                mca: vec![0; chunk * geometry.mca_words()],
                scalers: vec![0; chunk * geometry.scaler_words()],
                rois: vec![0; chunk * geometry.roi_words()],
                meta: vec![FrameMeta::default(); chunk],
                len: 0,
            };
            // Cannot fail: the channel has room for every batch and its receiver is alive.
            let _ = free_tx.send(batch);
        }
        let failure = Arc::new(Mutex::new(None));
        let thread_failure = Arc::clone(&failure);
        let flushed = Arc::new(AtomicU64::new(0));
        let thread_flushed = Arc::clone(&flushed);
        let thread = std::thread::Builder::new()
            .name("xsp3-receive writer".into())
            .spawn(move || {
                write_jobs(
                    writer,
                    geometry,
                    &jobs_rx,
                    &free_tx,
                    &thread_failure,
                    &thread_flushed,
                )
            })
            .map_err(SinkError::Spawn)?;
        Ok(FileSink {
            geometry,
            jobs: jobs_tx,
            free: free_rx,
            filling: None,
            thread,
            failure,
            chunk,
            aligned: w.frames_per_file.is_none_or(|f| f % chunk as u64 == 0),
            submitted: 0,
            writer_waits: 0,
            target: chunk,
            last_submit: Instant::now(),
            flushed,
            unflushed_msgs: VecDeque::new(),
            pushed: 0,
            reported_flushed: 0,
        })
    }

    /// Copies one frame (payloads and ROI values already checked against the geometry) into the
    /// batch, and submits the batch when it is full. Waits for a free batch if every one is
    /// being written.
    pub(crate) fn push(
        &mut self,
        msg_number: u64,
        mca: &[u8],
        scalers: &[u8],
        rois: &[RoiValues],
        meta: FrameMeta,
    ) -> Result<(), SinkError> {
        match self.unflushed_msgs.back_mut() {
            Some(run) if run[0] + run[1] == msg_number => run[1] += 1,
            _ => self.unflushed_msgs.push_back([msg_number, 1]),
        }
        self.pushed += 1;
        if self.filling.is_none() {
            let batch = match self.free.try_recv() {
                Ok(batch) => batch,
                Err(_) => {
                    self.writer_waits += 1;
                    self.free.recv().map_err(|_| SinkError::WriterEnded)?
                }
            };
            self.filling = Some(batch);
        }
        let Some(b) = self.filling.as_mut() else {
            return Ok(());
        };
        let (mw, sw) = (self.geometry.mca_words(), self.geometry.scaler_words());
        let i = b.len;
        copy_le(&mut b.mca[i * mw..(i + 1) * mw], mca);
        copy_le(&mut b.scalers[i * sw..(i + 1) * sw], scalers);
        let rw = self.geometry.roi_words();
        let sums = rois.iter().flat_map(|r| r.counts.iter().copied());
        for (word, sum) in b.rois[i * rw..(i + 1) * rw].iter_mut().zip(sums) {
            *word = sum;
        }
        b.meta[i] = meta;
        b.len += 1;
        if b.len >= self.target {
            self.submit()?;
        }
        Ok(())
    }

    /// Hands the batch being filled (if it has frames) to the writer thread.
    fn submit(&mut self) -> Result<(), SinkError> {
        let Some(batch) = self.filling.take_if(|b| b.len > 0) else {
            return Ok(());
        };
        let n = batch.len as u64;
        self.send(Job::Write(batch))?;
        self.submitted += n;
        self.last_submit = Instant::now();
        let chunk = self.chunk as u64;
        self.target = if self.aligned {
            (chunk - self.submitted % chunk) as usize
        } else {
            self.chunk
        };
        Ok(())
    }

    fn send(&mut self, job: Job) -> Result<(), SinkError> {
        self.jobs.send(job).map_err(|_| SinkError::WriterEnded)
    }

    /// Submits a partly filled batch that has waited longer than `interval`, and has the file
    /// flushed.
    pub(crate) fn flush_if_due(&mut self, interval: Duration) -> Result<(), SinkError> {
        let pending = self.filling.as_ref().is_some_and(|b| b.len > 0);
        if pending && self.last_submit.elapsed() >= interval {
            self.submit()?;
            self.send(Job::Flush)?;
        }
        Ok(())
    }

    /// Has everything pushed so far written and flushed now, whatever its age (for a receiver
    /// that acknowledges: an idle stream gets its acknowledgements at once).
    pub(crate) fn flush_now(&mut self) -> Result<(), SinkError> {
        if self.reported_flushed == self.pushed {
            return Ok(());
        }
        self.submit()?;
        self.send(Job::Flush)
    }

    /// Message numbers of the frames written and flushed since the last call, as `[first, count]`
    /// runs.
    pub(crate) fn take_flushed_msgs(&mut self) -> Vec<[u64; 2]> {
        let flushed = self.flushed.load(Ordering::Acquire).min(self.pushed);
        let mut todo = flushed - self.reported_flushed;
        self.reported_flushed = flushed;
        let mut out = Vec::new();
        while todo > 0 {
            let Some(run) = self.unflushed_msgs.front_mut() else {
                break;
            };
            let n = run[1].min(todo);
            out.push([run[0], n]);
            run[0] += n;
            run[1] -= n;
            todo -= n;
            if run[1] == 0 {
                self.unflushed_msgs.pop_front();
            }
        }
        out
    }

    /// The writer thread's first error, once.
    pub(crate) fn take_failure(&mut self) -> Option<WriteError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Submits what is left, waits for the writer thread and returns its writer (to finish) and
    /// its error if it was not taken yet.
    pub(crate) fn close(mut self) -> Result<(WriterEnd, Option<WriteError>), SinkError> {
        let submitted = self.submit();
        let FileSink {
            jobs,
            thread,
            failure,
            ..
        } = self;
        // The closed channel ends the writer thread's loop.
        drop(jobs);
        let end = thread.join().map_err(|_| SinkError::WriterPanicked)?;
        submitted?;
        let failure = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Ok((end, failure))
    }
}

/// The writer thread: writes each batch and returns its buffer. After the first error (kept in
/// `failure`) it writes nothing more and counts the frames it discards.
fn write_jobs(
    mut writer: AcqFileWriter,
    geometry: Geometry,
    jobs: &mpsc::Receiver<Job>,
    free: &mpsc::SyncSender<Batch>,
    failure: &Mutex<Option<WriteError>>,
    flushed: &AtomicU64,
) -> WriterEnd {
    let mut discarded = 0u64;
    let mut broken = false;
    let (mw, sw, rw) = (
        geometry.mca_words(),
        geometry.scaler_words(),
        geometry.roi_words(),
    );
    for job in jobs {
        let result = match job {
            Job::Write(mut batch) => {
                let n = batch.len;
                let result = if broken {
                    discarded += n as u64;
                    Ok(())
                } else {
                    writer.write_batch(
                        &batch.mca[..n * mw],
                        &batch.scalers[..n * sw],
                        &batch.rois[..n * rw],
                        &batch.meta[..n],
                    )
                };
                if result.is_err() {
                    discarded += n as u64;
                }
                batch.len = 0;
                let _ = free.send(batch);
                result
            }
            Job::Flush if !broken => writer.flush(),
            Job::Flush => Ok(()),
        };
        if let Err(e) = result {
            broken = true;
            *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
        }
        // Release: the receiving thread acknowledges these frames as safe on disk.
        flushed.store(writer.frames_flushed(), Ordering::Release);
    }
    WriterEnd { writer, discarded }
}

/// Copies little-endian u32 words from `bytes` (exactly `4 * dst.len()` long) into `dst`.
pub(crate) fn copy_le(dst: &mut [u32], bytes: &[u8]) {
    bytemuck::cast_slice_mut::<u32, u8>(dst).copy_from_slice(bytes);
    if cfg!(target_endian = "big") {
        for w in dst.iter_mut() {
            *w = u32::from_le(*w);
        }
    }
}

/// Adds the receiver's own attributes to a finished file: who received it and how the series
/// ended.
pub(crate) fn annotate(path: &Path, receiver: &str, s: &SeriesSummary) -> hdf5::Result<()> {
    let file = hdf5::File::open_rw(path)?;
    let det = file.group(layout::DETECTOR)?;
    set_str(&det, "receiver", receiver)?;
    set_scalar(&det, "series_end_received", s.series_end_received as u8)?;
    set_scalar(&det, "sender_stream_drops", s.sender_stream_drops)?;
    set_scalar(&det, "frames_discarded", s.frames_discarded)?;
    set_scalar(&det, "msg_missing", s.msg_missing)?;
    if let Some(note) = &s.end_note {
        set_str(&det, "end_note", note)?;
    }
    file.close()
}
